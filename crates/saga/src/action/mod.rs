//! Running actions: what a participant receives ([`StepCall`]), what it may answer
//! ([`StepError`]), in-process functions ([`StepFunction`]) and the HTTP runner.

mod bus;
mod http;

pub(crate) use self::bus::BusRunner;
pub use self::bus::{EXT_IDEMPOTENCY_KEY, EXT_OUTCOME};
pub use self::http::IDEMPOTENCY_KEY;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

pub(crate) use self::http::HttpRunner;
use crate::definition::{Action, SagaDefinition};
use crate::state::{SagaState, idempotency_key};
use crate::{Error, Result};

/// One call of a step's action or compensation.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCall {
    /// The instance.
    pub saga_id: String,
    /// The definition's name.
    pub saga: String,
    /// The step.
    pub step: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Whether this undoes the step.
    pub compensation: bool,
    /// The same for every attempt, restart and replica: apply the call at most once per key.
    pub idempotency_key: String,
    /// The saga's input.
    pub data: Value,
    /// Results of the steps that succeeded so far, by step name.
    pub results: BTreeMap<String, Value>,
    /// The trace context the call passes on (the attempt's span when spans are exported):
    /// HTTP steps send it as `traceparent`, bus commands carry it as their event's.
    pub trace: Option<flotilla_core::TraceContext>,
}

impl StepCall {
    pub(crate) fn new(state: &SagaState, step: usize, attempt: u32, compensation: bool) -> Self {
        let name = state.steps[step].name.clone();
        Self {
            saga_id: state.id.clone(),
            saga: state.definition.clone(),
            idempotency_key: idempotency_key(&state.id, &name, compensation),
            step: name,
            attempt,
            compensation,
            data: state.data.clone(),
            results: state
                .steps
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.result.clone()?)))
                .collect(),
            trace: state.trace.clone(),
        }
    }

    /// The context templates read: `data`, `saga.id`, `saga.name`, `steps.<name>.result`
    /// and `steps.<name>.key`.
    pub fn template_context(&self, steps: &[String]) -> Value {
        let steps: serde_json::Map<String, Value> = steps
            .iter()
            .map(|s| {
                let mut v = json!({ "key": idempotency_key(&self.saga_id, s, false) });
                if let Some(r) = self.results.get(s) {
                    v["result"] = r.clone();
                }
                (s.clone(), v)
            })
            .collect();
        json!({
            "data": self.data,
            "saga": { "id": self.saga_id, "name": self.saga },
            "steps": steps,
        })
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// What went wrong (recorded in the stream).
    pub message: String,
    /// Whether another attempt may succeed. Forward steps are retried only when it is set;
    /// compensations are always retried while attempts remain. A retryable failure also
    /// leaves the outcome unknown (the work may be done and only the answer lost), so such a
    /// step is compensated if the saga turns back; a permanent one says nothing was done.
    pub retryable: bool,
    /// The attempt ran out of time, so it may have taken effect.
    pub timed_out: bool,
}

impl StepError {
    /// A failure another attempt may fix (a 503, a lost connection); the work may or may not
    /// have been done.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            timed_out: false,
        }
    }

    /// A refusal no retry will change, after which nothing was done (the card is declined,
    /// a 4xx).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            timed_out: false,
        }
    }

    /// The attempt ran out of time.
    pub fn timed_out() -> Self {
        Self {
            message: "attempt timed out".into(),
            retryable: true,
            timed_out: true,
        }
    }
}

/// An in-process action, registered on the orchestrator by name.
#[async_trait]
pub trait StepFunction: Send + Sync + 'static {
    /// Runs the action once. It may run again for the same key (at-least-once).
    async fn call(&self, call: StepCall) -> Result<Value, StepError>;
}

#[async_trait]
impl<F, Fut> StepFunction for F
where
    F: Fn(StepCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    async fn call(&self, call: StepCall) -> Result<Value, StepError> {
        self(call).await
    }
}

/// Runs actions of every kind the orchestrator was given the means for.
#[derive(Default)]
pub(crate) struct Executor {
    pub(crate) functions: HashMap<String, Arc<dyn StepFunction>>,
    pub(crate) http: Option<HttpRunner>,
    pub(crate) bus: Option<BusRunner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("http", &self.http.is_some())
            .field("bus", &self.bus.is_some())
            .finish()
    }
}

impl Executor {
    /// Refuses a definition this orchestrator could not run, naming the field.
    pub(crate) fn check(&self, def: &SagaDefinition) -> Result<()> {
        for (field, action) in def.actions() {
            match action {
                Action::Function(f) if !self.functions.contains_key(f) => {
                    let reason = format!("no function {f:?} is registered on the orchestrator");
                    return Err(Error::definition(format!("{field}.function"), reason));
                }
                Action::Http(_) if self.http.is_none() => {
                    let reason = "HTTP steps need the orchestrator to be given a discovery source";
                    return Err(Error::definition(format!("{field}.http"), reason));
                }
                Action::Bus(_) if self.bus.is_none() => {
                    let reason = "bus-command steps need the orchestrator to be given a bus";
                    return Err(Error::definition(format!("{field}.bus"), reason));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs `action` once.
    pub(crate) async fn run(
        &self,
        def: &SagaDefinition,
        action: &Action,
        call: StepCall,
    ) -> Result<Value, StepError> {
        match action {
            Action::Function(name) => match self.functions.get(name) {
                Some(f) => f.call(call).await,
                None => Err(StepError::permanent(format!("function {name:?} is gone"))),
            },
            Action::Http(h) => match &self.http {
                Some(runner) => runner.run(def, h, call).await,
                None => Err(StepError::permanent("no discovery source for HTTP steps")),
            },
            Action::Bus(b) => match &self.bus {
                Some(runner) => runner.run(def, b, call).await,
                None => Err(StepError::permanent("no bus for bus-command steps")),
            },
        }
    }
}
