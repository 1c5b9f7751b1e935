//! Subscriptions on top of any [`EventStore`]: catch-up then live, and persistent ones that
//! keep a checkpoint per subscriber.
//!
//! There is one mechanism, not two: the subscription always reads `$all` after the last
//! position it delivered, and when a read comes back short it waits for the store's
//! [`head`](EventStore::head) to move. Because the contract forbids `read_all` from returning a
//! position while a lower one may still appear, "catch-up" and "live" cannot disagree at the
//! switch: there is no switch, so there is no gap and no duplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::{Filter, Position, ReadAll, RecordedEvent};
use crate::store::EventStore;
use crate::{Error, Result};

/// Events fetched per read while catching up.
const PAGE: usize = 512;
/// Back-off between retries of a failed read (a lost connection).
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// A running subscription; dropping it stops the reader task.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<RecordedEvent>>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next event in position order. `Some(Err(..))` is a failure that ended the
    /// subscription (a non-retryable storage error); `None` follows it.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to `$all` (restricted by `filter`) from just after `after` (0: from the start):
/// every stored event first, then new ones as they are appended.
pub fn subscribe_all(store: Arc<dyn EventStore>, after: Position, filter: Filter) -> Subscription {
    let (tx, rx) = mpsc::channel(PAGE);
    let task = tokio::spawn(pump(store, after, filter, tx));
    Subscription { rx, task }
}

async fn pump(
    store: Arc<dyn EventStore>,
    mut after: Position,
    filter: Filter,
    tx: mpsc::Sender<Result<RecordedEvent>>,
) {
    let mut head = store.head();
    loop {
        // Read the head before the page: every event at or below it is visible to the read.
        let seen_head = *head.borrow_and_update();
        let read = ReadAll::after(after, PAGE).filtered(filter.clone());
        let page = match store.read_all(read).await {
            Ok(page) => page,
            Err(Error::Storage {
                retryable: true, ..
            }) => {
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = page.len() == PAGE;
        for event in page {
            after = event.position;
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        if !full {
            // A short page covered everything visible up to `seen_head`, filtered or not.
            after = after.max(seen_head);
            if head.changed().await.is_err() {
                return;
            }
        }
    }
}

/// What a persistent subscription calls for each event.
#[async_trait]
pub trait EventHandler: Send {
    /// Handles one event. An error stops the subscription without moving the checkpoint, so
    /// the event is delivered again on restart (at least once).
    async fn handle(
        &mut self,
        event: &RecordedEvent,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// Runs the persistent subscriber `name`: resumes after its checkpoint, hands each event to
/// `handler`, and records the checkpoint after each handled event. Returns the last
/// checkpoint when `stop` completes, or the error that ended it.
pub async fn run_persistent<H: EventHandler + ?Sized>(
    store: Arc<dyn EventStore>,
    name: &str,
    filter: Filter,
    handler: &mut H,
    stop: impl Future<Output = ()>,
) -> Result<Position> {
    let mut checkpoint = store.load_checkpoint(name).await?.unwrap_or(0);
    let mut sub = subscribe_all(store.clone(), checkpoint, filter);
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            biased;
            () = &mut stop => return Ok(checkpoint),
            next = sub.next() => match next {
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(e),
                None => return Ok(checkpoint),
            },
        };
        if let Err(e) = handler.handle(&event).await {
            return Err(Error::Handler {
                subscriber: name.to_owned(),
                position: event.position,
                message: e.to_string(),
            });
        }
        store.save_checkpoint(name, event.position).await?;
        checkpoint = event.position;
    }
}
