//! Configuring an orchestrator: its store, clock, discovery source, functions and sagas.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use flotilla_core::Clock;
use flotilla_discovery::Discovery;
use flotilla_eventstore::EventStore;

use super::{Orchestrator, Shared};
use crate::action::{BusRunner, Executor, HttpRunner, StepFunction};
use crate::definition::SagaDefinition;
use crate::{Result, SagaObserver, TokioClock};

/// Configures an [`Orchestrator`].
#[derive(Debug)]
pub struct OrchestratorBuilder {
    store: Arc<dyn EventStore>,
    clock: Option<Arc<dyn Clock>>,
    executor: Executor,
    sagas: Vec<SagaDefinition>,
    observers: Vec<Arc<dyn SagaObserver>>,
    lease: Option<(String, Duration)>,
}

impl OrchestratorBuilder {
    /// The clock (default: [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Where HTTP steps find their services; without it, sagas with HTTP steps are refused.
    pub fn discovery(mut self, discovery: Arc<dyn Discovery>) -> Self {
        self.executor.http = Some(HttpRunner::new(discovery));
        self
    }

    /// The bus that carries bus-command steps and their replies; without it, sagas with
    /// bus steps are refused.
    pub fn bus(mut self, bus: flotilla_bus::Bus) -> Self {
        self.executor.bus = Some(BusRunner::new(bus));
        self
    }

    /// Registers an in-process action under `name` (`function = "name"` in definitions).
    pub fn function(mut self, name: impl Into<String>, f: impl StepFunction) -> Self {
        self.executor.functions.insert(name.into(), Arc::new(f));
        self
    }

    /// Registers a saga definition.
    pub fn saga(mut self, def: SagaDefinition) -> Self {
        self.sagas.push(def);
        self
    }

    /// Tells `observer` about starts and ends recorded by this orchestrator.
    pub fn observer(mut self, observer: Arc<dyn SagaObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Shares the store with other orchestrators under leases: this one is `owner` (unique
    /// among them, stable across its restarts), drives the instances it starts, and takes
    /// over those of an orchestrator whose lease has not been renewed for `ttl`. Every
    /// orchestrator on a store uses a lease, or none does. See docs/sagas.md.
    pub fn lease(mut self, owner: impl Into<String>, ttl: Duration) -> Self {
        self.lease = Some((owner.into(), ttl));
        self
    }

    /// The orchestrator; refuses definitions it could not run, naming the field, and a
    /// lease owner that cannot name a stream.
    pub fn build(self) -> Result<Orchestrator> {
        let lease = self
            .lease
            .map(|(owner, ttl)| super::lease::Lease::new(owner, ttl))
            .transpose()?;
        let orch = Orchestrator {
            shared: Arc::new(Shared {
                store: self.store,
                clock: self.clock.unwrap_or_else(|| Arc::new(TokioClock::new())),
                executor: self.executor,
                definitions: RwLock::default(),
                running: Mutex::default(),
                observers: self.observers,
                lease,
            }),
            tasks: Arc::default(),
        };
        for def in self.sagas {
            orch.register(def)?;
        }
        Ok(orch)
    }
}

impl Orchestrator {
    /// Starts configuring an orchestrator on `store`.
    pub fn builder(store: Arc<dyn EventStore>) -> OrchestratorBuilder {
        OrchestratorBuilder {
            store,
            clock: None,
            executor: Executor::default(),
            sagas: Vec::new(),
            observers: Vec::new(),
            lease: None,
        }
    }
}
