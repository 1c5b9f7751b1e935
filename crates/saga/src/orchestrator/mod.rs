//! The orchestrator: holds definitions, starts instances, drives each with its own task, and
//! resumes unfinished ones after a restart.

mod builder;
mod driver;
mod lease;
mod ops;
mod recover;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::{DateTime, Utc};
use flotilla_core::Clock;
use flotilla_eventstore::{EventStore, ExpectedVersion};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use builder::OrchestratorBuilder;
pub use ops::{Started, TimelineEntry};
pub use recover::Recovery;

use crate::action::Executor;
use crate::definition::SagaDefinition;
use crate::event::SagaEvent;
use crate::state::{Effect, SagaState, after};
use crate::{Error, Result};

/// Runs sagas. Cheap to clone; dropping the last clone stops every driver task (the
/// instances stay in the store and the next orchestrator's [`recover`](Self::recover) resumes
/// them).
///
/// ```
/// # use std::sync::Arc;
/// # use flotilla_eventstore::MemoryEventStore;
/// # use flotilla_saga::{Action, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepCall, StepError};
/// # use serde_json::json;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flotilla_saga::Result<()> {
/// let saga = SagaDefinition::builder("place-order", 1)
///     .step(StepBuilder::new("reserve", Action::function("reserve"))
///         .compensate(Action::function("release")))
///     .build()?;
/// let orchestrator = Orchestrator::builder(Arc::new(MemoryEventStore::new()))
///     .function("reserve", |call: StepCall| async move {
///         // Apply at most once per call.idempotency_key.
///         Ok::<_, StepError>(json!({ "reservation": call.idempotency_key }))
///     })
///     .function("release", |_call: StepCall| async { Ok::<_, StepError>(json!(null)) })
///     .saga(saga)
///     .build()?;
/// orchestrator.recover().await?;
/// let id = orchestrator.start("place-order", json!({ "order_id": "o-1" })).await?;
/// assert_eq!(orchestrator.wait(&id).await?.status, SagaStatus::Completed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Orchestrator {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    executor: Executor,
    definitions: RwLock<BTreeMap<(String, u32), Arc<SagaDefinition>>>,
    running: Mutex<HashMap<String, Running>>,
    observers: Vec<Arc<dyn crate::SagaObserver>>,
    /// Set when orchestrators share the store: who drives which instance.
    lease: Option<lease::Lease>,
}

#[derive(Debug)]
struct Running {
    wake: Arc<Notify>,
    state: watch::Receiver<SagaState>,
    /// Someone asked to drive the instance while this driver ran (a retry of an instance the
    /// driver had just seen end): it reads the stream again before leaving.
    rerun: bool,
}

impl Shared {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now().into()
    }

    /// The local drivers; a poisoned lock still holds a consistent map (every update is one
    /// insert or remove).
    fn running(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Orchestrator {
    /// Adds a definition version. New instances use the highest version of a name; running
    /// ones keep theirs. Registering the same name and version again with other content is
    /// refused, since running instances rely on it.
    pub fn register(&self, def: SagaDefinition) -> Result<()> {
        def.validate()?;
        self.shared.executor.check(&def)?;
        let mut defs = write(&self.shared.definitions);
        let key = (def.name.clone(), def.version);
        if defs.get(&key).is_some_and(|old| **old != def) {
            let reason = format!(
                "{} version {} is registered with other steps",
                def.name, def.version
            );
            return Err(Error::definition("version", reason));
        }
        defs.insert(key, Arc::new(def));
        Ok(())
    }

    fn definition(&self, name: &str, version: Option<u32>) -> Result<Arc<SagaDefinition>> {
        let defs = self
            .shared
            .definitions
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let found = match version {
            Some(v) => defs.get(&(name.to_owned(), v)),
            None => defs
                .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
                .next_back()
                .map(|(_, d)| d),
        };
        found.cloned().ok_or_else(|| Error::UnknownDefinition {
            name: name.to_owned(),
            version,
        })
    }

    /// Starts an instance of the latest version of `name` with `data`; returns its id
    /// (`<name>-<uuid>`). When this returns, the start is durable. The instance starts a
    /// trace of its own; [`start_in_trace`](Self::start_in_trace) joins the caller's.
    pub async fn start(&self, name: &str, data: Value) -> Result<String> {
        self.start_in_trace(name, data, None).await
    }

    /// [`start`](Self::start) as part of the trace `starter` (a request's `traceparent`):
    /// its steps' spans and calls continue that trace, even after a restart.
    pub async fn start_in_trace(
        &self,
        name: &str,
        data: Value,
        starter: Option<&flotilla_core::TraceContext>,
    ) -> Result<String> {
        let def = self.definition(name, None)?;
        let id = format!("{name}-{}", uuid::Uuid::now_v7());
        let (new, state) = self.opening(&id, &def, data, starter)?;
        let stream = stream::stream_of(&id)?;
        let store = self.shared.store.as_ref();
        stream::append_durably(store, &stream, ExpectedVersion::NoStream, new).await?;
        self.launch(state, def);
        Ok(id)
    }

    /// The events that open instance `id` (its `SagaStarted`, its claim by this
    /// orchestrator's lease if it has one, and the first step's start, to be appended in one
    /// write) and the state they make.
    fn opening(
        &self,
        id: &str,
        def: &SagaDefinition,
        data: Value,
        starter: Option<&flotilla_core::TraceContext>,
    ) -> Result<(Vec<flotilla_eventstore::NewEvent>, SagaState)> {
        let now = self.shared.now();
        let started = SagaEvent::Started {
            definition: def.name.clone(),
            version: def.version,
            steps: def.steps.iter().map(|s| s.name.clone()).collect(),
            data,
            at: now,
            deadline: def.deadline.map(|d| after(now, d)),
        };
        let mut state =
            SagaState::start(id, &started).map_err(|r| Error::definition("steps", r))?;
        let trace = crate::spans::start(&def.name, id, starter);
        let mut events = vec![started];
        if let Some(lease) = &self.shared.lease {
            let claimed = SagaEvent::Claimed {
                owner: lease.owner.clone(),
                at: now,
            };
            state = state
                .apply(&claimed)
                .map_err(|r| Error::definition("steps", r))?;
            state.stream_version += 1;
            events.push(claimed);
        }
        if let Effect::Record(first) = crate::state::decide(&state, def, now) {
            // Deciding on a fresh instance's own state cannot be refused by it.
            state = state
                .apply(&first)
                .map_err(|r| Error::definition("steps", r))?;
            state.stream_version += 1;
            events.push(first);
        }
        let mut new: Vec<_> = events.iter().map(|e| e.to_new_event(id)).collect();
        crate::spans::to_metadata(&trace, &mut new[0].metadata);
        state.trace = Some(trace);
        Ok((new, state))
    }

    /// Drives an instance whose opening just became durable.
    fn launch(&self, state: SagaState, def: Arc<SagaDefinition>) {
        for o in &self.shared.observers {
            o.started(&state);
        }
        self.drive(state, def);
    }

    /// The instance as its stream says now.
    pub async fn get(&self, id: &str) -> Result<SagaState> {
        stream::load(self.shared.store.as_ref(), id).await
    }

    /// Waits until the instance ends (completed, compensated or stuck) if this orchestrator
    /// drives it; otherwise answers its current state.
    pub async fn wait(&self, id: &str) -> Result<SagaState> {
        let rx = {
            let running = self.shared.running();
            running.get(id).map(|r| r.state.clone())
        };
        if let Some(mut rx) = rx {
            // A closed channel means the driver stopped: the stream has the last word.
            let _ = rx.wait_for(|s| s.status.is_terminal()).await;
        }
        self.get(id).await
    }

    /// Turns the instance back now: it compensates its completed steps. Refused once it has
    /// ended or passed its pivot step; a no-op when it is already compensating.
    pub async fn cancel(&self, id: &str) -> Result<SagaState> {
        loop {
            let mut state = self.get(id).await?;
            let def = self.definition(&state.definition, Some(state.version))?;
            match &state.status {
                s if s.is_terminal() => return Err(invalid(id, "it has already ended")),
                crate::SagaStatus::Compensating { .. } => return Ok(state),
                _ if crate::state::past_pivot(&state, &def) => {
                    return Err(invalid(
                        id,
                        "it has passed its pivot step and only goes forward",
                    ));
                }
                _ => {}
            }
            let event = SagaEvent::Cancelled {
                reason: crate::AbortReason::Cancelled,
                at: self.shared.now(),
            };
            if let stream::Appended::Yes =
                stream::append(self.shared.store.as_ref(), &mut state, event).await?
            {
                self.wake(id);
                return Ok(state);
            }
        }
    }

    fn wake(&self, id: &str) {
        let running = self.shared.running();
        if let Some(r) = running.get(id) {
            r.wake.notify_one();
        }
    }

    /// Spawns a driver for `state` unless one already runs here.
    fn drive(&self, state: SagaState, def: Arc<SagaDefinition>) {
        let mut running = self.shared.running();
        if let Some(r) = running.get_mut(&state.id) {
            r.rerun = true;
            r.wake.notify_one();
            return;
        }
        let (tx, rx) = watch::channel(state.clone());
        let wake = Arc::new(Notify::new());
        running.insert(
            state.id.clone(),
            Running {
                wake: wake.clone(),
                state: rx,
                rerun: false,
            },
        );
        let driver = driver::Driver {
            shared: self.shared.clone(),
            def,
            state,
            wake,
            tx,
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(driver.run());
    }
}

fn invalid(id: &str, reason: &str) -> Error {
    Error::InvalidState {
        id: id.to_owned(),
        reason: reason.to_owned(),
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}
