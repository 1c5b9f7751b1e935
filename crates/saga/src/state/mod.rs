//! The saga state machine, pure: [`SagaState::apply`] folds an event into the state and
//! [`decide`] reads the state, the definition and the time and says what to do next, as data
//! ([`Effect`]). Nothing here does I/O or reads a clock, so every transition is testable by
//! hand and every replica decides the same from the same stream.

mod apply;
mod batch;
mod compensate;
mod decide;
mod outcome;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;

pub use batch::{MAX_BATCH, with_follow_ups};
pub use decide::{decide, past_pivot};
pub use outcome::{compensation_outcome, step_outcome};

use crate::event::AbortReason;

/// Where an instance is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SagaStatus {
    /// Running its steps forward.
    Running,
    /// Undoing its completed steps, newest first.
    Compensating {
        /// Why it turned back.
        reason: AbortReason,
    },
    /// Every step succeeded.
    Completed,
    /// Every completed step was undone.
    Compensated,
    /// Could not finish or undo a step: needs an operator.
    Stuck {
        /// The step.
        step: String,
        /// Its last error.
        error: String,
    },
}

impl SagaStatus {
    /// The status's name as the API shows it (`running`, `compensating`, `completed`,
    /// `compensated`, `stuck`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating { .. } => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Stuck { .. } => "stuck",
        }
    }

    /// The labels [`label`](Self::label) answers, for validating a filter.
    pub const LABELS: [&'static str; 5] = [
        "running",
        "compensating",
        "completed",
        "compensated",
        "stuck",
    ];

    /// Whether the instance has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Compensated | Self::Stuck { .. }
        )
    }
}

/// Where one action (a step, or its compensation) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Not tried yet.
    Pending,
    /// An attempt is under way (or was, when its runner died: it is run again).
    Running {
        /// The attempt.
        attempt: u32,
        /// When it times out.
        timeout_at: DateTime<Utc>,
    },
    /// The last attempt failed; the next starts at `retry_at`.
    Waiting {
        /// When.
        retry_at: DateTime<Utc>,
    },
    /// Failed for good (or interrupted by a cancel).
    Failed,
    /// Done.
    Succeeded,
}

/// One step of an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// The forward action.
    pub phase: Phase,
    /// Attempts started.
    pub attempts: u32,
    /// What it returned.
    pub result: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
    /// An attempt timed out, failed retryably or was interrupted: it may have taken effect,
    /// so it is undone too.
    pub possibly_done: bool,
    /// The compensation.
    pub compensation: Phase,
    /// Compensation attempts started.
    pub compensation_attempts: u32,
    /// The compensation's last error.
    pub compensation_error: Option<String>,
    /// Attempts spent before the last operator retry: the retry budget counts from here.
    pub retry_base: u32,
    /// The same for the compensation.
    pub compensation_retry_base: u32,
}

impl StepState {
    fn new(name: String) -> Self {
        Self {
            name,
            phase: Phase::Pending,
            attempts: 0,
            result: None,
            error: None,
            possibly_done: false,
            compensation: Phase::Pending,
            compensation_attempts: 0,
            compensation_error: None,
            retry_base: 0,
            compensation_retry_base: 0,
        }
    }
}

/// An instance as folded from its stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaState {
    /// The instance id.
    pub id: String,
    /// Definition name.
    pub definition: String,
    /// Definition version it runs on.
    pub version: u32,
    /// Its input.
    pub data: Value,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Whole-saga deadline.
    pub deadline: Option<DateTime<Utc>>,
    /// Where it is.
    #[serde(flatten)]
    pub status: SagaStatus,
    /// Why it turned back, once it has: an operator retry of a stuck instance resumes
    /// compensating (with this reason) rather than going forward.
    pub abort_reason: Option<AbortReason>,
    /// Each step, in definition order.
    pub steps: Vec<StepState>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The orchestrator that drives it, when orchestrators share the store under leases
    /// (its last `SagaClaimed`).
    pub owner: Option<String>,
    /// The stream's version this state includes: the expected version of the next append.
    pub stream_version: u64,
    /// The trace the instance belongs to: its start's context, kept in the `SagaStarted`
    /// event's metadata. Its steps' spans are children of it.
    #[serde(skip)]
    pub trace: Option<flotilla_core::TraceContext>,
}

/// What to do next; the driver carries it out and records the outcome as an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append this event (it needs no work first).
    Record(crate::event::SagaEvent),
    /// Run attempt `attempt` of step `step`, giving up at `until`.
    RunStep {
        /// Step index.
        step: usize,
        /// The attempt.
        attempt: u32,
        /// When to stop waiting for it (its timeout, or an earlier saga deadline).
        until: DateTime<Utc>,
    },
    /// Run attempt `attempt` of step `step`'s compensation, giving up at `until`.
    RunCompensation {
        /// Step index.
        step: usize,
        /// The attempt.
        attempt: u32,
        /// Its timeout.
        until: DateTime<Utc>,
    },
    /// Run these attempts at the same time — steps of one group, or their compensations
    /// (`compensation`) — and record each outcome as it comes.
    RunGroup {
        /// Compensations rather than steps.
        compensation: bool,
        /// Each attempt: step index, attempt, when to stop waiting for it.
        runs: Vec<(usize, u32, DateTime<Utc>)>,
    },
    /// Nothing to do before `until` (a durable timer: the time comes from the stream).
    Wait {
        /// When to decide again.
        until: DateTime<Utc>,
    },
    /// The instance has ended.
    Finish,
}

/// What a group does next, from what each of its members would do alone: anything to
/// record comes first (so the members' starts are written together, and a member that failed
/// for good turns the saga back while the others still run); then whatever runs, together;
/// else a wait until the earliest member's timer.
pub(crate) fn together(effects: impl Iterator<Item = Effect>, compensation: bool) -> Effect {
    let mut runs = Vec::new();
    let mut wait: Option<DateTime<Utc>> = None;
    for effect in effects {
        match effect {
            Effect::RunStep {
                step,
                attempt,
                until,
            }
            | Effect::RunCompensation {
                step,
                attempt,
                until,
            } => runs.push((step, attempt, until)),
            Effect::Wait { until } => wait = Some(wait.map_or(until, |w| w.min(until))),
            Effect::Finish => {}
            other => return other,
        }
    }
    match (runs.len(), wait) {
        (0, Some(until)) => Effect::Wait { until },
        (0, None) => Effect::Finish,
        (1, _) if compensation => {
            let (step, attempt, until) = runs[0];
            Effect::RunCompensation {
                step,
                attempt,
                until,
            }
        }
        (1, _) => {
            let (step, attempt, until) = runs[0];
            Effect::RunStep {
                step,
                attempt,
                until,
            }
        }
        _ => Effect::RunGroup { compensation, runs },
    }
}

/// `now + d`, saturating.
pub(crate) fn after(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The idempotency key of a step's action, or of its compensation: stable across retries,
/// restarts and replicas, so a participant applies each at most once.
pub fn idempotency_key(saga_id: &str, step: &str, compensation: bool) -> String {
    if compensation {
        format!("{saga_id}:{step}:compensation")
    } else {
        format!("{saga_id}:{step}")
    }
}

#[cfg(test)]
mod tests;
