//! Turning what an attempt returned into the event that records it, retry time included.
//! The backoff's jitter is drawn from a hash of the attempt's identity rather than a random
//! generator, so the decision stays a pure function while retries of different instances
//! still spread apart.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flotilla_resilience::backoff::Backoff;
use serde_json::Value;

use super::{SagaState, after};
use crate::action::StepError;
use crate::definition::{SagaDefinition, StepPolicy};
use crate::event::SagaEvent;

/// The event recording attempt `attempt` of step `step`.
pub fn step_outcome(
    state: &SagaState,
    def: &SagaDefinition,
    step: usize,
    attempt: u32,
    outcome: Result<Value, StepError>,
    now: DateTime<Utc>,
) -> SagaEvent {
    let name = def.steps[step].name.clone();
    match outcome {
        Ok(result) => SagaEvent::StepSucceeded {
            step: name,
            attempt,
            result,
        },
        Err(e) => {
            let policy = &def.steps[step].policy;
            let spent = attempt.saturating_sub(state.steps[step].retry_base);
            let retry = e.retryable && spent < policy.max_attempts;
            SagaEvent::StepFailed {
                retry_at: retry.then(|| retry_at(policy, state, &name, attempt, false, now)),
                step: name,
                attempt,
                error: e.message,
                timed_out: e.timed_out,
                possibly_done: e.timed_out || e.retryable,
            }
        }
    }
}

/// The event recording attempt `attempt` of step `step`'s compensation. Every failure is
/// retried while attempts remain: a compensation must finish.
pub fn compensation_outcome(
    state: &SagaState,
    def: &SagaDefinition,
    step: usize,
    attempt: u32,
    outcome: Result<Value, StepError>,
    now: DateTime<Utc>,
) -> SagaEvent {
    let name = def.steps[step].name.clone();
    match outcome {
        Ok(_) => SagaEvent::CompensationSucceeded {
            step: name,
            attempt,
        },
        Err(e) => {
            let policy = &def.steps[step].compensation_policy;
            let spent = attempt.saturating_sub(state.steps[step].compensation_retry_base);
            let retry = spent < policy.max_attempts;
            SagaEvent::CompensationFailed {
                retry_at: retry.then(|| retry_at(policy, state, &name, attempt, true, now)),
                step: name,
                attempt,
                error: e.message,
            }
        }
    }
}

fn retry_at(
    policy: &StepPolicy,
    state: &SagaState,
    step: &str,
    attempt: u32,
    compensation: bool,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let ceiling = Backoff {
        base: policy.base_delay,
        cap: policy.max_delay,
    }
    .ceiling(attempt);
    let mut h = std::hash::DefaultHasher::new();
    (&state.id, step, attempt, compensation).hash(&mut h);
    let fraction = (h.finish() % 1_000_001) as f64 / 1_000_000.0;
    after(now, Duration::mul_f64(ceiling, fraction))
}
