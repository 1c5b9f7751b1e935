//! The batching task behind [`publish`](super::publish): takes a request slot, then every
//! publish waiting (up to the limits), sends them as one `POST /api/v1/bus/events` on a task
//! of its own, and hands each caller its share of the outcomes.

use std::sync::Arc;

use flotilla_bus::{Error, PublishOutcome};
use http::Method;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};

use super::error::from_call;
use super::publish::{BatchOptions, Pending};
use crate::ControlPlane;
use crate::http::Call;

/// The batching task: takes a request slot, then every publish waiting (up to the limits),
/// and sends them as one request on a task of its own.
pub(super) async fn run(cp: ControlPlane, options: BatchOptions, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(options.in_flight.max(1)));
    let mut carried: Option<Pending> = None;
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
        let (mut bytes, mut events) = (first.bytes, first.items.len());
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            let fits = bytes + next.bytes <= options.max_bytes
                && events + next.items.len() <= options.max_events;
            if !fits {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            events += next.items.len();
            batch.push(next);
        }
        let cp = cp.clone();
        tokio::spawn(async move {
            send_batch(&cp, batch).await;
            drop(slot);
        });
    }
}

/// Sends one request and hands each caller its share of the outcomes.
async fn send_batch(cp: &ControlPlane, batch: Vec<Pending>) {
    let items = batch.iter().flat_map(|p| p.items.iter());
    let result = post(cp, items).await;
    let mut outcomes = match result {
        Ok(o) => o.into_iter(),
        Err(e) => {
            let message = e.to_string();
            for p in batch {
                let _ = p.reply.send(Err(same_error(&e, &message)));
            }
            return;
        }
    };
    for p in batch {
        let mine: Vec<_> = outcomes.by_ref().take(p.items.len()).collect();
        let answer = if mine.len() == p.items.len() {
            Ok(mine)
        } else {
            Err(Error::Backend(
                "the control plane answered fewer outcomes than events".into(),
            ))
        };
        let _ = p.reply.send(answer);
    }
}

/// Each caller of a failed request gets the same kind of error (errors are not `Clone`).
fn same_error(e: &Error, message: &str) -> Error {
    match e {
        Error::Unavailable(_) => Error::Unavailable(message.to_owned()),
        Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::TooLarge { size, limit } => Error::TooLarge {
            size: *size,
            limit: *limit,
        },
        _ => Error::Backend(message.to_owned()),
    }
}

async fn post<'a>(
    cp: &ControlPlane,
    items: impl Iterator<Item = &'a Vec<u8>>,
) -> Result<Vec<PublishOutcome>, Error> {
    #[derive(Deserialize)]
    struct Outcomes {
        outcomes: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        outcome: PublishOutcome,
    }
    let mut body = b"{\"events\":[".to_vec();
    for (i, item) in items.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let call = Call::new(Method::POST, "/api/v1/bus/events").body("application/json", body.into());
    let answer = cp
        .call(call)
        .await
        .map_err(|e| from_call(e, ("bus", "/api/v1/bus/events")))?;
    let got: Outcomes = answer.decode().map_err(|e| Error::Backend(e.to_string()))?;
    Ok(got.outcomes.into_iter().map(|i| i.outcome).collect())
}
