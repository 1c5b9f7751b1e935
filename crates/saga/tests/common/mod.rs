//! Scripted in-process participants that record every call, and the shop's order saga built
//! on them.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod faulty;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_eventstore::{EventStore, MemoryEventStore, ReadStream};
use flotilla_saga::{
    Action, Orchestrator, OrchestratorBuilder, SagaDefinition, SagaEvent, StepBuilder, StepCall,
    StepError, StepPolicy, TokioClock,
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What a participant does on one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers `{"by": <function>}` at once.
    Ok,
    /// Fails.
    Fail(StepError),
    /// Never answers.
    Hang,
    /// Answers after a while.
    After(Duration),
    /// Answers once the gate holds `true`.
    Gate(watch::Receiver<bool>),
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: String,
    pub key: String,
    pub attempt: u32,
    pub saga_id: String,
}

#[derive(Debug, Default)]
struct Inner {
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
}

/// Every participant of the test saga, scripted per function.
#[derive(Debug, Clone)]
pub struct Participants {
    inner: Arc<Mutex<Inner>>,
    calls: Arc<watch::Sender<Vec<Call>>>,
    /// Every call as received, for what `Call` leaves out (its trace).
    received: Arc<Mutex<Vec<StepCall>>>,
}

impl Participants {
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            calls: Arc::new(watch::Sender::new(Vec::new())),
            received: Arc::default(),
        }
    }

    /// The next calls of `function` answer `replies`, in order, then `Reply::Ok`.
    pub fn script(&self, function: &str, replies: Vec<Reply>) -> &Self {
        let mut inner = self.inner.lock().unwrap();
        inner.scripts.insert(function.into(), replies.into());
        self
    }

    /// Every call of `function` answers `reply` once its script is used up.
    pub fn always(&self, function: &str, reply: Reply) -> &Self {
        let mut inner = self.inner.lock().unwrap();
        inner.defaults.insert(function.into(), reply);
        self
    }

    /// Every call as received, with its trace context.
    pub fn traced_calls(&self) -> Vec<StepCall> {
        self.received.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The functions called, in order.
    pub fn names(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.function).collect()
    }

    /// Waits until `function` has been called `n` times.
    pub async fn called(&self, function: &str, n: usize) {
        let mut rx = self.calls.subscribe();
        rx.wait_for(|c| c.iter().filter(|c| c.function == function).count() >= n)
            .await
            .unwrap();
    }

    /// Waits until `functions` together have been called `n` times.
    pub async fn called_any(&self, functions: &[&str], n: usize) {
        let mut rx = self.calls.subscribe();
        let count = |c: &Vec<Call>| {
            c.iter()
                .filter(|c| functions.contains(&c.function.as_str()))
                .count()
        };
        rx.wait_for(|c| count(c) >= n).await.unwrap();
    }

    async fn handle(&self, function: &str, call: StepCall) -> Result<Value, StepError> {
        self.received.lock().unwrap().push(call.clone());
        self.calls.send_modify(|c| {
            c.push(Call {
                function: function.into(),
                key: call.idempotency_key.clone(),
                attempt: call.attempt,
                saga_id: call.saga_id.clone(),
            })
        });
        let reply = {
            let mut inner = self.inner.lock().unwrap();
            let scripted = inner
                .scripts
                .get_mut(function)
                .and_then(VecDeque::pop_front);
            scripted
                .or_else(|| inner.defaults.get(function).cloned())
                .unwrap_or(Reply::Ok)
        };
        match reply {
            Reply::Ok => Ok(json!({ "by": function })),
            Reply::Fail(e) => Err(e),
            Reply::Hang => std::future::pending().await,
            Reply::After(d) => {
                tokio::time::sleep(d).await;
                Ok(json!({ "by": function }))
            }
            Reply::Gate(mut open) => {
                let _ = open.wait_for(|o| *o).await;
                Ok(json!({ "by": function }))
            }
        }
    }

    /// Registers every function of the order saga on `builder`.
    pub fn register(&self, mut builder: OrchestratorBuilder) -> OrchestratorBuilder {
        for f in FUNCTIONS {
            let me = self.clone();
            builder = builder.function(f, move |call| {
                let me = me.clone();
                async move { me.handle(f, call).await }
            });
        }
        builder
    }
}

const FUNCTIONS: [&str; 5] = ["reserve", "release", "charge", "refund", "confirm"];

/// Fast policies so paused-time tests stay short: 1s per attempt, one attempt per step,
/// three per compensation.
pub fn policy(max_attempts: u32) -> StepPolicy {
    StepPolicy {
        timeout: Duration::from_secs(1),
        max_attempts,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    }
}

/// The shop's order saga over in-process functions: reserve stock, charge payment, confirm
/// the order; release and refund undo the first two.
pub fn order_saga(step_attempts: u32) -> flotilla_saga::SagaBuilder {
    let step = |name: &str, undo: Option<&str>| {
        let s = StepBuilder::new(name, Action::function(name))
            .policy(policy(step_attempts))
            .compensation_policy(policy(3));
        match undo {
            Some(u) => s.compensate(Action::function(u)),
            None => s,
        }
    };
    SagaDefinition::builder("place-order", 1)
        .step(step("reserve", Some("release")))
        .step(step("charge", Some("refund")))
        .step(step("confirm", None))
}

/// A store, a shared clock and an orchestrator running `def` on `participants`.
pub struct World {
    pub store: Arc<MemoryEventStore>,
    pub clock: TokioClock,
    pub participants: Participants,
    pub def: SagaDefinition,
}

impl World {
    pub fn new(def: SagaDefinition) -> Self {
        Self {
            store: Arc::new(MemoryEventStore::new()),
            clock: TokioClock::new(),
            participants: Participants::new(),
            def,
        }
    }

    /// A fresh orchestrator on the same store, clock and participants (a restart).
    pub fn orchestrator(&self) -> Orchestrator {
        let store: Arc<dyn EventStore> = self.store.clone();
        let builder = Orchestrator::builder(store).clock(Arc::new(self.clock));
        self.participants
            .register(builder)
            .saga(self.def.clone())
            .build()
            .unwrap()
    }

    /// The instance's events as recorded.
    pub async fn events(&self, id: &str) -> Vec<SagaEvent> {
        let stream = flotilla_core::StreamId::new(format!("saga-{id}")).unwrap();
        let recorded = self
            .store
            .read_stream(&stream, ReadStream::all())
            .await
            .unwrap();
        recorded
            .iter()
            .map(|e| SagaEvent::from_recorded(e).unwrap())
            .collect()
    }
}

pub fn permanent(msg: &str) -> Reply {
    Reply::Fail(StepError::permanent(msg))
}

pub fn transient(msg: &str) -> Reply {
    Reply::Fail(StepError::retryable(msg))
}
