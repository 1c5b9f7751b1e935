//! One hosted projection: its live run, its rebuilds, and the state the admin routes report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::projection::{self, Projection};
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
        if status.state == State::Stopped {
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

    fn update_rebuild(&self, f: impl FnOnce(&mut Rebuild)) {
        if let Some(r) = self.lock().rebuild.as_mut() {
            f(r);
        }
    }
}

/// Longest pause between retries of a failing live run.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

/// Runs `projection` live from its checkpoint until `stop`, rebuilding it when asked.
pub(crate) async fn host(
    shared: Arc<Shared>,
    mut projection: Box<dyn Projection>,
    stop: CancellationToken,
) {
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
                shared.set_state(State::Failed, Some(e.to_string()));
                let pause = Duration::from_secs(1 << failures.min(6)).min(MAX_RETRY_PAUSE);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = shared.rebuild_asked.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    shared.set_state(State::Stopped, None);
}

/// Rebuilds the read model, recording progress; a shutdown interrupts it (the checkpoint
/// saved after each page lets the next live run continue the replay where it stopped).
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
    let outcome = tokio::select! {
        r = projection::rebuild(store, projection, progress) => r.map_err(|e| e.to_string()),
        () = stop.cancelled() => Err("interrupted by the service's shutdown".to_owned()),
    };
    match outcome {
        Ok(position) => {
            tracing::info!(projection = %shared.name, position, "projection rebuilt");
            shared.update_rebuild(|r| {
                r.state = RebuildState::Done;
                r.position = position;
            });
        }
        Err(error) => {
            tracing::error!(projection = %shared.name, %error, "projection rebuild failed");
            shared.update_rebuild(|r| {
                r.state = RebuildState::Failed;
                r.error = Some(error);
            });
        }
    }
}
