//! Group commit over HTTP: the task that gathers what callers queue (publishes, settles)
//! into requests. It takes a request slot (at most `in_flight` requests out), then the first
//! waiting entry and every other one already queued, up to a request's byte and count
//! limits, and sends them on a task of its own. While all slots are busy, entries wait in
//! the bounded queue and go out together when one frees, so under load requests grow rather
//! than multiply, and memory stays bounded by the queue and the requests out.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// What an entry costs a request.
pub(super) trait Weighed {
    /// Encoded bytes and items (events or settles).
    fn weight(&self) -> (usize, usize);
}

/// The bounds of one gathering task.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) max_bytes: usize,
    pub(super) max_items: usize,
    pub(super) in_flight: usize,
}

/// Runs until every sender of `rx` is gone; `send` carries one gathered request.
pub(super) async fn run<P, F, Fut>(bounds: Bounds, mut rx: mpsc::Receiver<P>, send: F)
where
    P: Weighed + Send + 'static,
    F: Fn(Vec<P>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(bounds.in_flight.max(1)));
    let mut carried: Option<P> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let (mut bytes, mut items) = first.weight();
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            let (b, n) = next.weight();
            if bytes + b > bounds.max_bytes || items + n > bounds.max_items {
                carried = Some(next);
                break;
            }
            (bytes, items) = (bytes + b, items + n);
            batch.push(next);
        }
        let request = send(batch);
        tokio::spawn(async move {
            request.await;
            drop(slot);
        });
    }
}
