//! Deciding the next effect, split by the instance's status: forward here, compensation in
//! `compensate.rs`.

use chrono::{DateTime, Utc};

use super::{Effect, Phase, SagaState, SagaStatus, after, compensate};
use crate::definition::SagaDefinition;
use crate::event::{AbortReason, SagaEvent};

/// What an instance should do next at `now`. `def` must be the version the instance runs.
pub fn decide(state: &SagaState, def: &SagaDefinition, now: DateTime<Utc>) -> Effect {
    match &state.status {
        SagaStatus::Running => forward(state, def, now),
        SagaStatus::Compensating { .. } => compensate::decide(state, def, now),
        _ => Effect::Finish,
    }
}

/// Whether the pivot step has succeeded: from then on the saga only goes forward.
pub fn past_pivot(state: &SagaState, def: &SagaDefinition) -> bool {
    def.pivot_index()
        .and_then(|p| state.steps.get(p))
        .is_some_and(|s| s.phase == Phase::Succeeded)
}

fn forward(state: &SagaState, def: &SagaDefinition, now: DateTime<Utc>) -> Effect {
    // The deadline only binds before the pivot.
    let deadline = state.deadline.filter(|_| !past_pivot(state, def));
    if deadline.is_some_and(|d| now >= d) {
        return Effect::Record(SagaEvent::Cancelled {
            reason: AbortReason::DeadlineExceeded,
            at: now,
        });
    }
    let Some(i) = state.steps.iter().position(|s| s.phase != Phase::Succeeded) else {
        return Effect::Record(SagaEvent::Completed { at: now });
    };
    let members = def
        .group_of(i)
        .map(|j| one_step(state, def, j, deadline, now));
    super::together(members, false)
}

/// What step `i` would do next on its own (`Finish` once it has succeeded).
fn one_step(
    state: &SagaState,
    def: &SagaDefinition,
    i: usize,
    deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Effect {
    let cap = |t: DateTime<Utc>| deadline.map_or(t, |d| d.min(t));
    let step = &state.steps[i];
    match step.phase {
        Phase::Pending => start_step(def, i, 1, now),
        Phase::Running {
            attempt,
            timeout_at,
        } if now >= timeout_at => Effect::Record(super::step_outcome(
            state,
            def,
            i,
            attempt,
            Err(crate::action::StepError::timed_out()),
            now,
        )),
        Phase::Running {
            attempt,
            timeout_at,
        } => Effect::RunStep {
            step: i,
            attempt,
            until: cap(timeout_at),
        },
        Phase::Waiting { retry_at } if now >= retry_at => {
            start_step(def, i, step.attempts + 1, now)
        }
        Phase::Waiting { retry_at } => Effect::Wait {
            until: cap(retry_at),
        },
        Phase::Failed => give_up(state, def, i, now),
        Phase::Succeeded => Effect::Finish,
    }
}

fn start_step(def: &SagaDefinition, i: usize, attempt: u32, now: DateTime<Utc>) -> Effect {
    Effect::Record(SagaEvent::StepStarted {
        step: def.steps[i].name.clone(),
        attempt,
        timeout_at: after(now, def.steps[i].policy.timeout),
    })
}

/// A step failed for good: before the pivot the saga turns back; after it, nothing may be
/// undone, so an operator must finish it.
fn give_up(state: &SagaState, def: &SagaDefinition, i: usize, now: DateTime<Utc>) -> Effect {
    if past_pivot(state, def) {
        let step = &state.steps[i];
        return Effect::Record(SagaEvent::Stuck {
            step: step.name.clone(),
            error: step.error.clone().unwrap_or_default(),
            at: now,
        });
    }
    Effect::Record(SagaEvent::Cancelled {
        reason: AbortReason::StepFailed,
        at: now,
    })
}
