//! One hosted projection: its live run, its rebuilds, and the state the admin routes report.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::projection::{self, Projection, Rebuilt};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where a hosted projection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    /// Not started yet.
    Starting,
    /// Following the store from its checkpoint.
    Live,
    /// Replaying history into an emptied read model.
    Rebuilding,
    /// The live run failed (see `error`); retried with backoff.
    Failed,
    /// The service stopped it.
    Stopped,
}

/// How a rebuild went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RebuildState {
    Running,
    Done,
    Failed,
}

/// The latest rebuild of a projection.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rebuild {
    /// Counts rebuilds of this projection since the service started (1, 2, ...).
    pub(crate) id: u64,
    pub(crate) state: RebuildState,
    /// The position replayed up to.
    pub(crate) position: u64,
    /// The store's head when the rebuild started: done when `position` reaches it.
    pub(crate) target: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// What the admin routes show of a projection.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
    pub(crate) state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) rebuild: Option<Rebuild>,
}

/// Why a rebuild was not started.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Rebuild `id` is still running.
    Running(u64),
    /// The service is stopping.
    Stopped,
}

/// A hosted projection as its host task and the admin routes share it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) store: Arc<dyn EventStore>,
    status: Mutex<Status>,
    rebuild_asked: Notify,
    /// The host's stop token, once it runs: a rebuild asked for after it is cancelled would
    /// never run, so it is refused.
    stop: OnceLock<CancellationToken>,
}

impl Shared {
    pub(crate) fn new(name: String, store: Arc<dyn EventStore>) -> Self {
        let status = Status {
            state: State::Starting,
            error: None,
            rebuild: None,
        };
        Self {
            name,
            store,
            status: Mutex::new(status),
            rebuild_asked: Notify::new(),
            stop: OnceLock::new(),
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.lock();
        status.state = state;
        status.error = error;
    }

    /// Records a rebuild request (the host picks it up between two events) unless one is
    /// running or the projection was stopped.
    pub(crate) fn request_rebuild(&self) -> Result<Rebuild, Refusal> {
        let mut status = self.lock();
        let draining = self.stop.get().is_some_and(CancellationToken::is_cancelled);
        if draining || status.state == State::Stopped {
            return Err(Refusal::Stopped);
        }
        if let Some(r) = status
            .rebuild
            .as_ref()
            .filter(|r| r.state == RebuildState::Running)
        {
            return Err(Refusal::Running(r.id));
        }
        let rebuild = Rebuild {
            id: status.rebuild.as_ref().map_or(1, |r| r.id + 1),
            state: RebuildState::Running,
            position: 0,
            target: *self.store.head().borrow(),
            error: None,
        };
        status.rebuild = Some(rebuild.clone());
        drop(status);
        self.rebuild_asked.notify_one();
        Ok(rebuild)
    }

    fn rebuild_pending(&self) -> bool {
        let status = self.lock();
        status.state != State::Rebuilding
            && status
                .rebuild
                .as_ref()
                .is_some_and(|r| r.state == RebuildState::Running)
    }

    /// Marks a requested rebuild that never started as failed: the host is exiting.
    fn abandon_pending_rebuild(&self) {
        if self.rebuild_pending() {
            self.update_rebuild(|r| {
                r.state = RebuildState::Failed;
                r.error = Some(SHUTDOWN.to_owned());
            });
        }
    }

    fn update_rebuild(&self, f: impl FnOnce(&mut Rebuild)) {
        if let Some(r) = self.lock().rebuild.as_mut() {
            f(r);
        }
    }
}

/// Longest pause between retries of a failing live run.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// What the admin routes say of a failure; the detail (storage errors, SQL) goes to the log.
const LIVE_FAILED: &str = "the live run failed; retrying (the service's log has the cause)";
const REBUILD_FAILED: &str = "the rebuild failed (the service's log has the cause)";
const SHUTDOWN: &str = "interrupted by the service's shutdown";

/// Runs `projection` live from its checkpoint until `stop`, rebuilding it when asked.
pub(crate) async fn host(
    shared: Arc<Shared>,
    mut projection: Box<dyn Projection>,
    stop: CancellationToken,
) {
    // Set once per projection: the builder starts each hosted projection once.
    let _ = shared.stop.set(stop.clone());
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        if shared.rebuild_pending() {
            rebuild(&shared, projection.as_mut(), &stop).await;
            continue;
        }
        shared.set_state(State::Live, None);
        let interrupt = async {
            tokio::select! {
                () = stop.cancelled() => {}
                () = shared.rebuild_asked.notified() => {}
            }
        };
        let store = Arc::clone(&shared.store);
        match projection::run(store, projection.as_mut(), interrupt).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(projection = %shared.name, error = %e, "projection failed; retrying");
                shared.set_state(State::Failed, Some(LIVE_FAILED.to_owned()));
                let pause = Duration::from_secs(1 << failures.min(6)).min(MAX_RETRY_PAUSE);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = shared.rebuild_asked.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    shared.abandon_pending_rebuild();
    shared.set_state(State::Stopped, None);
}

/// Rebuilds the read model, recording progress. A shutdown ends it between two pages (a
/// store call in flight is finished, not dropped).
///
/// Whatever happens, the live run that follows is correct to start from the stored
/// checkpoint: the rebuild sets it to 0 before resetting the read model and moves it only
/// after a page is applied, so it is never ahead of what the read model holds. A failed or
/// interrupted rebuild is therefore continued by the live run (replaying from where the
/// checkpoint is), never skipped.
async fn rebuild(shared: &Arc<Shared>, projection: &mut dyn Projection, stop: &CancellationToken) {
    shared.set_state(State::Rebuilding, None);
    tracing::info!(projection = %shared.name, "projection rebuild started");
    let progress = |position, target| {
        shared.update_rebuild(|r| {
            r.position = position;
            r.target = target;
        });
    };
    let store = Arc::clone(&shared.store);
    let stopping = || stop.is_cancelled();
    let outcome = projection::rebuild_until(store, projection, progress, stopping).await;
    let error = match outcome {
        Ok(Rebuilt::Done(position)) => {
            tracing::info!(projection = %shared.name, position, "projection rebuilt");
            shared.update_rebuild(|r| {
                r.state = RebuildState::Done;
                r.position = position;
            });
            return;
        }
        Ok(Rebuilt::Stopped(position)) => {
            tracing::warn!(projection = %shared.name, position, "projection rebuild interrupted by shutdown; the next run continues the replay");
            SHUTDOWN
        }
        Err(error) => {
            tracing::error!(projection = %shared.name, %error, "projection rebuild failed; the live run continues the replay from the checkpoint");
            REBUILD_FAILED
        }
    };
    shared.update_rebuild(|r| {
        r.state = RebuildState::Failed;
        r.error = Some(error.to_owned());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_eventstore::projection::BoxError;
    use flotilla_eventstore::{MemoryEventStore, RecordedEvent};

    struct Nothing;

    #[async_trait::async_trait]
    impl Projection for Nothing {
        fn name(&self) -> &str {
            "nothing"
        }
        async fn apply(&mut self, _: &RecordedEvent) -> Result<(), BoxError> {
            Ok(())
        }
        async fn reset(&mut self) -> Result<(), BoxError> {
            Ok(())
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            "nothing".into(),
            Arc::new(MemoryEventStore::new()),
        ))
    }

    #[tokio::test]
    async fn a_rebuild_asked_for_while_draining_is_refused() {
        let shared = shared();
        let stop = CancellationToken::new();
        let _ = shared.stop.set(stop.clone());
        stop.cancel();
        // The host has not noticed the shutdown yet (its state is not `Stopped`).
        assert!(matches!(shared.request_rebuild(), Err(Refusal::Stopped)));
    }

    #[tokio::test]
    async fn a_rebuild_the_host_never_started_is_failed_when_it_exits() {
        let shared = shared();
        assert!(shared.request_rebuild().is_ok());
        let stop = CancellationToken::new();
        stop.cancel();
        host(Arc::clone(&shared), Box::new(Nothing), stop).await;
        let status = shared.status();
        assert_eq!(status.state, State::Stopped);
        let rebuild = status.rebuild.expect("the request is kept");
        assert_eq!(rebuild.state, RebuildState::Failed);
        assert_eq!(rebuild.error.as_deref(), Some(SHUTDOWN));
    }
}
