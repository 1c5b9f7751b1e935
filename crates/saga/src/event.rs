//! The events of a saga instance's stream (`saga-<name>-<id>`): the instance's whole durable
//! state. Times are wall-clock instants so timers survive a restart: a deadline, an attempt's
//! timeout and a retry's backoff are written into the event that starts them.

use chrono::{DateTime, Utc};
use flotilla_eventstore::{Metadata, NewEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Why a saga turned back before finishing its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortReason {
    /// A step failed for good.
    StepFailed,
    /// An operator or caller cancelled it.
    Cancelled,
    /// The whole-saga deadline passed.
    DeadlineExceeded,
}

/// One transition of a saga instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SagaEvent {
    /// The instance began, on this definition version, with this data.
    Started {
        /// Definition name.
        definition: String,
        /// Definition version.
        version: u32,
        /// The step names, in order, so the stream reads on its own.
        steps: Vec<String>,
        /// The saga's input.
        data: Value,
        /// When it started.
        at: DateTime<Utc>,
        /// When it must be done by, if ever.
        deadline: Option<DateTime<Utc>>,
    },
    /// An attempt of a step began; it may run until `timeout_at`.
    StepStarted {
        /// The step.
        step: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// When the attempt times out.
        timeout_at: DateTime<Utc>,
    },
    /// The step succeeded with `result`.
    StepSucceeded {
        /// The step.
        step: String,
        /// The attempt that succeeded.
        attempt: u32,
        /// What the action returned.
        result: Value,
    },
    /// An attempt failed; it is retried at `retry_at`, or, when that is absent, never.
    StepFailed {
        /// The step.
        step: String,
        /// The failed attempt.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// It ran out of time.
        timed_out: bool,
        /// Its outcome is unknown (it timed out, or failed in a way another attempt might
        /// not): it may have taken effect, so it is compensated if the saga turns back.
        possibly_done: bool,
        /// When the next attempt starts.
        retry_at: Option<DateTime<Utc>>,
    },
    /// An attempt of a step's compensation began.
    CompensationStarted {
        /// The step being undone.
        step: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// When the attempt times out.
        timeout_at: DateTime<Utc>,
    },
    /// The step is undone.
    CompensationSucceeded {
        /// The step.
        step: String,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// A compensation attempt failed; retried at `retry_at`, or when absent the saga is stuck.
    CompensationFailed {
        /// The step.
        step: String,
        /// The failed attempt.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// When the next attempt starts.
        retry_at: Option<DateTime<Utc>>,
    },
    /// The saga turned back (cancel or deadline; a failed step turns it back by itself).
    Cancelled {
        /// Why.
        reason: AbortReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// Every step succeeded.
    Completed {
        /// When.
        at: DateTime<Utc>,
    },
    /// Every completed step was undone.
    Compensated {
        /// When.
        at: DateTime<Utc>,
    },
    /// An operator asked a stuck instance to try again: the step (or compensation) that ran
    /// out of attempts gets a fresh budget from now.
    Retried {
        /// When.
        at: DateTime<Utc>,
    },
    /// Orchestrator `owner` drives the instance from now on: it opened it, or took it over
    /// after its previous owner's lease ran out. Appended with the expected version like any
    /// transition, so of two orchestrators claiming at once exactly one wins.
    Claimed {
        /// The orchestrator's lease name.
        owner: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A compensation (or, after the pivot, a step) ran out of attempts: an operator must act.
    Stuck {
        /// The step that could not be finished or undone.
        step: String,
        /// Its last error.
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl SagaEvent {
    /// The event's type as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Started { .. } => "SagaStarted",
            Self::StepStarted { .. } => "StepStarted",
            Self::StepSucceeded { .. } => "StepSucceeded",
            Self::StepFailed { .. } => "StepFailed",
            Self::CompensationStarted { .. } => "CompensationStarted",
            Self::CompensationSucceeded { .. } => "CompensationSucceeded",
            Self::CompensationFailed { .. } => "CompensationFailed",
            Self::Cancelled { .. } => "SagaCancelled",
            Self::Completed { .. } => "SagaCompleted",
            Self::Compensated { .. } => "SagaCompensated",
            Self::Stuck { .. } => "SagaStuck",
            Self::Retried { .. } => "SagaRetried",
            Self::Claimed { .. } => "SagaClaimed",
        }
    }

    /// The event to append, correlated by saga id.
    pub fn to_new_event(&self, saga_id: &str) -> NewEvent {
        // Serializing a derived enum of plain data into a Value cannot fail.
        let data = serde_json::to_value(self).unwrap_or(Value::Null);
        NewEvent::new(self.kind(), data).with_metadata(Metadata {
            correlation_id: Some(saga_id.to_owned()),
            ..Metadata::default()
        })
    }

    /// Reads a stored event back.
    pub fn from_recorded(e: &RecordedEvent) -> Result<Self> {
        serde_json::from_value(e.data.clone()).map_err(|err| Error::Corrupt {
            stream: e.stream.to_string(),
            version: e.version,
            reason: err.to_string(),
        })
    }

    /// Whether the instance ends with this event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Compensated { .. } | Self::Stuck { .. }
        )
    }
}
