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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;

    struct Entry(usize);

    impl Weighed for Entry {
        fn weight(&self) -> (usize, usize) {
            (self.0, 1)
        }
    }

    /// Runs the task over `entries` queued before it starts, with one request out at a time
    /// held until the test releases it; answers the sizes of the requests sent.
    async fn requests(entries: Vec<usize>, bounds: Bounds) -> Vec<usize> {
        let (tx, rx) = mpsc::channel(entries.len().max(1));
        for e in entries {
            tx.send(Entry(e)).await.expect("the queue has room");
        }
        drop(tx);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&sent);
        run(bounds, rx, move |batch: Vec<Entry>| {
            s.lock().expect("not poisoned").push(batch.len());
            async {}
        })
        .await;
        sent.lock().expect("not poisoned").clone()
    }

    #[tokio::test]
    async fn everything_waiting_goes_out_together_within_the_bounds() {
        let bounds = Bounds {
            max_bytes: 100,
            max_items: 4,
            in_flight: 1,
        };
        assert_eq!(requests(vec![1; 10], bounds).await, [4, 4, 2]);
        assert_eq!(requests(vec![40; 5], bounds).await, [2, 2, 1]);
        // One entry over the byte bound still goes out, alone: the server judges it.
        assert_eq!(requests(vec![500, 1], bounds).await, [1, 1]);
    }

    #[tokio::test]
    async fn no_more_requests_are_out_than_in_flight() {
        let bounds = Bounds {
            max_bytes: 100,
            max_items: 1,
            in_flight: 2,
        };
        let (tx, rx) = mpsc::channel(8);
        let out = Arc::new(AtomicOut::default());
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
        let o = Arc::clone(&out);
        let task = tokio::spawn(run(bounds, rx, move |_batch: Vec<Entry>| {
            o.start();
            let (o, released) = (Arc::clone(&o), Arc::clone(&released));
            async move {
                if let Some(r) = released.lock().await.take() {
                    let _ = r.await;
                }
                o.end();
            }
        }));
        for _ in 0..5 {
            tx.send(Entry(1)).await.expect("the task runs");
        }
        tokio::task::yield_now().await;
        let _ = release.send(());
        drop(tx);
        task.await.expect("the task ends with its queue");
        assert_eq!(out.most(), 2);
    }

    /// Requests out now and the most ever out at once.
    #[derive(Default)]
    struct AtomicOut(Mutex<(usize, usize)>);

    impl AtomicOut {
        fn start(&self) {
            let mut g = self.0.lock().expect("not poisoned");
            g.0 += 1;
            g.1 = g.1.max(g.0);
        }
        fn end(&self) {
            self.0.lock().expect("not poisoned").0 -= 1;
        }
        fn most(&self) -> usize {
            self.0.lock().expect("not poisoned").1
        }
    }
}
