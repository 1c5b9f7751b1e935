//! Publishing with group commit: concurrent publishes are gathered into one
//! `POST /api/v1/bus/events` request (many topics, each event with its own delay), as the
//! SQLite writer gathers waiting writes into one transaction. While `in_flight` requests are
//! out, new publishes wait in a bounded queue; when one returns, everything waiting (up to
//! the byte and count limits) goes out together, and each caller gets its own outcomes.
//!
//! A failed request fails every publish in it the same way: [`Error::Unavailable`] when the
//! outcome is unknown (retry with the same ids; the server's dedupe drops what was stored).

use std::sync::OnceLock;

use flotilla_bus::{Error, Outgoing, PublishOutcome};
use tokio::sync::{mpsc, oneshot};

use super::gather::{self, Bounds, Weighed};
use super::info::Info;
use crate::ControlPlane;

mod encode;
mod send;

/// How publishes and settles are gathered into requests (each kind has its own task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most events (or settles) in one request (default 1,000, the most the server takes).
    pub max_events: usize,
    /// Most bytes of events in one request (default 4 MiB; the server's body limit, if
    /// lower, wins).
    pub max_bytes: usize,
    /// Requests out at once (default 4); beyond, publishes wait and are gathered.
    pub in_flight: usize,
    /// Publishes waiting for a request (default 4,096); beyond, callers wait, so memory
    /// stays bounded while the control plane is slow or down.
    pub queue: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_bytes: 4 << 20,
            in_flight: 4,
            queue: 4096,
        }
    }
}

/// One caller's publish: its events, encoded, and where its outcomes go.
pub(super) struct Pending {
    pub(super) items: Vec<Vec<u8>>,
    pub(super) bytes: usize,
    pub(super) reply: oneshot::Sender<Result<Vec<PublishOutcome>, Error>>,
}

impl Weighed for Pending {
    fn weight(&self) -> (usize, usize) {
        (self.bytes, self.items.len())
    }
}

/// The queue into the batching task, started on the first publish (so building a bus needs
/// no runtime) and ended when the last clone of the bus is dropped.
#[derive(Debug)]
pub(super) struct Batcher {
    cp: ControlPlane,
    options: BatchOptions,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl Batcher {
    pub(super) fn new(cp: ControlPlane, options: BatchOptions) -> Self {
        Self {
            cp,
            options,
            queue: OnceLock::new(),
        }
    }

    /// The queue; the first call starts the task, with the byte limit the server allows.
    fn queue(&self, max_bytes: usize) -> &mpsc::Sender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.options.queue.max(1));
            let bounds = Bounds {
                max_bytes,
                max_items: self.options.max_events,
                in_flight: self.options.in_flight,
            };
            let cp = self.cp.clone();
            tokio::spawn(gather::run(bounds, rx, move |batch| {
                send::send_batch(cp.clone(), batch)
            }));
            tx
        })
    }

    pub(super) async fn publish(
        &self,
        info: &Info,
        batch: Vec<Outgoing>,
    ) -> Result<Vec<PublishOutcome>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let items = encode::encode(info, &batch)?;
        // Room for the request's own brackets and commas under the server's body limit.
        let server = info
            .limits
            .max_body_bytes
            .saturating_sub(info.limits.max_body_bytes / 64);
        let limit = self.options.max_bytes.min(server);
        let mut outcomes = Vec::with_capacity(items.len());
        // A caller's batch larger than one request goes out in order, a request each.
        for chunk in chunks(items, limit, self.options.max_events) {
            outcomes.extend(self.send(chunk, limit).await?);
        }
        Ok(outcomes)
    }

    async fn send(
        &self,
        items: Vec<Vec<u8>>,
        max_bytes: usize,
    ) -> Result<Vec<PublishOutcome>, Error> {
        let (reply, answer) = oneshot::channel();
        let bytes = items.iter().map(Vec::len).sum();
        let pending = Pending {
            items,
            bytes,
            reply,
        };
        self.queue(max_bytes)
            .send(pending)
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// Splits one caller's items into requests of at most `max_bytes` / `max_events` (an item
/// larger than `max_bytes` alone is still one request: the server judges it).
fn chunks(items: Vec<Vec<u8>>, max_bytes: usize, max_events: usize) -> Vec<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut bytes = 0;
    for item in items {
        let last = out.last_mut().expect("out starts with one chunk");
        if !last.is_empty() && (bytes + item.len() > max_bytes || last.len() >= max_events) {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += item.len();
        out.last_mut().expect("out has a chunk").push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_batch_is_split_by_bytes_and_by_count_in_order() {
        let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let sizes = |c: &Vec<Vec<Vec<u8>>>| c.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(&chunks(items.clone(), 25, 100)), [2, 2, 1]);
        assert_eq!(sizes(&chunks(items.clone(), 1000, 3)), [3, 2]);
        assert_eq!(sizes(&chunks(items.clone(), 5, 100)), [1, 1, 1, 1, 1]);
        let flat: Vec<u8> = chunks(items, 25, 100)
            .concat()
            .iter()
            .map(|i| i[0])
            .collect();
        assert_eq!(flat, [0, 1, 2, 3, 4]);
    }
}
