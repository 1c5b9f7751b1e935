//! Projections: read models kept up to date by a persistent subscription, and rebuilt from
//! the start of `$all` on demand.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::subscription::{EventHandler, run_persistent};
use crate::{Error, EventStore, Filter, Position, ReadAll, RecordedEvent, Result};

/// What a handler may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A read model fed by events.
#[async_trait]
pub trait Projection: Send {
    /// The subscriber name its checkpoint is stored under; stable across restarts.
    fn name(&self) -> &str;
    /// Which events it needs.
    fn filter(&self) -> Filter {
        Filter::All
    }
    /// Applies one event. Delivery is at least once: make it idempotent (e.g. keyed upserts,
    /// or store the last applied position with the read model).
    async fn apply(&mut self, event: &RecordedEvent) -> std::result::Result<(), BoxError>;
    /// Empties the read model before a rebuild.
    async fn reset(&mut self) -> std::result::Result<(), BoxError>;
}

struct Adapter<'a, P: ?Sized>(&'a mut P);

#[async_trait]
impl<P: Projection + ?Sized> EventHandler for Adapter<'_, P> {
    async fn handle(&mut self, event: &RecordedEvent) -> std::result::Result<(), BoxError> {
        self.0.apply(event).await
    }
}

/// Runs `projection` from its checkpoint, live, until `stop` completes.
pub async fn run<P: Projection + ?Sized>(
    store: Arc<dyn EventStore>,
    projection: &mut P,
    stop: impl Future<Output = ()>,
) -> Result<Position> {
    let (name, filter) = (projection.name().to_owned(), projection.filter());
    run_persistent(store, &name, filter, &mut Adapter(projection), stop).await
}

/// Rebuilds `projection`: resets the read model and its checkpoint, then replays every
/// matching event up to the head as it was when the rebuild started, calling
/// `progress(done_up_to, target)` after each page. Returns the position reached; [`run`]
/// continues live from there.
pub async fn rebuild<P: Projection + ?Sized>(
    store: Arc<dyn EventStore>,
    projection: &mut P,
    progress: impl FnMut(Position, Position) + Send,
) -> Result<Position> {
    match rebuild_until(store, projection, progress, || false).await? {
        Rebuilt::Done(at) | Rebuilt::Stopped(at) => Ok(at),
    }
}

/// How [`rebuild_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuilt {
    /// Every event up to the target was replayed; the checkpoint is at this position.
    Done(Position),
    /// `stop` asked to end between two pages; the checkpoint is at this position, so [`run`]
    /// (or a new rebuild) continues the replay from there.
    Stopped(Position),
}

/// [`rebuild`], checking `stop()` between pages so that a shutdown ends it at a page boundary
/// rather than in the middle of a store call.
///
/// The checkpoint goes back to 0 *before* the read model is reset: if anything fails or stops
/// on the way, the checkpoint is never ahead of what the read model holds, and the next run
/// replays over it (which idempotent `apply` tolerates) instead of skipping history.
pub async fn rebuild_until<P: Projection + ?Sized>(
    store: Arc<dyn EventStore>,
    projection: &mut P,
    mut progress: impl FnMut(Position, Position) + Send,
    stop: impl Fn() -> bool + Send,
) -> Result<Rebuilt> {
    let name = projection.name().to_owned();
    let failed = |position, e: BoxError| Error::Handler {
        subscriber: name.clone(),
        position,
        message: e.to_string(),
    };
    store.save_checkpoint(&name, 0).await?;
    projection.reset().await.map_err(|e| failed(0, e))?;
    let target = *store.head().borrow();
    let mut at = 0;
    while at < target {
        if stop() {
            return Ok(Rebuilt::Stopped(at));
        }
        let read = ReadAll::after(at, 1024).filtered(projection.filter());
        let page = store.read_all(read).await?;
        for event in page.iter().take_while(|e| e.position <= target) {
            projection
                .apply(event)
                .await
                .map_err(|e| failed(event.position, e))?;
            at = event.position;
        }
        if page.len() < 1024 || page.last().is_some_and(|e| e.position >= target) {
            at = target;
        }
        store.save_checkpoint(&name, at).await?;
        progress(at, target);
    }
    Ok(Rebuilt::Done(at))
}
