//! Deciding while compensating: undo, newest first, every step that succeeded or may have
//! taken effect (an attempt timed out, failed retryably or was interrupted) and has a
//! compensation. An earlier step's
//! compensation starts only once every later one has succeeded; one that runs out of
//! attempts leaves the saga stuck, never compensated.

use chrono::{DateTime, Utc};

use super::{Effect, Phase, SagaState, StepState, after, compensation_outcome};
use crate::action::StepError;
use crate::definition::SagaDefinition;
use crate::event::SagaEvent;

pub(super) fn decide(state: &SagaState, def: &SagaDefinition, now: DateTime<Utc>) -> Effect {
    let pending = state
        .steps
        .iter()
        .enumerate()
        .rev()
        .find(|(i, s)| needs_undo(def, *i, s) && s.compensation != Phase::Succeeded);
    let Some((i, _)) = pending else {
        return Effect::Record(SagaEvent::Compensated { at: now });
    };
    // A group's members are undone together.
    let members = def.group_of(i).filter_map(|j| {
        let s = &state.steps[j];
        (needs_undo(def, j, s) && s.compensation != Phase::Succeeded)
            .then(|| undo(state, def, j, s, now))
    });
    super::together(members, true)
}

fn needs_undo(def: &SagaDefinition, i: usize, s: &StepState) -> bool {
    def.steps[i].compensation.is_some() && (s.phase == Phase::Succeeded || s.possibly_done)
}

fn undo(
    state: &SagaState,
    def: &SagaDefinition,
    i: usize,
    step: &StepState,
    now: DateTime<Utc>,
) -> Effect {
    match step.compensation {
        Phase::Pending => start(def, i, 1, now),
        Phase::Running {
            attempt,
            timeout_at,
        } if now >= timeout_at => Effect::Record(compensation_outcome(
            state,
            def,
            i,
            attempt,
            Err(StepError::timed_out()),
            now,
        )),
        Phase::Running {
            attempt,
            timeout_at,
        } => Effect::RunCompensation {
            step: i,
            attempt,
            until: timeout_at,
        },
        Phase::Waiting { retry_at } if now >= retry_at => {
            start(def, i, step.compensation_attempts + 1, now)
        }
        Phase::Waiting { retry_at } => Effect::Wait { until: retry_at },
        Phase::Failed => Effect::Record(SagaEvent::Stuck {
            step: step.name.clone(),
            error: step.compensation_error.clone().unwrap_or_default(),
            at: now,
        }),
        Phase::Succeeded => unreachable!("find() skipped compensated steps"),
    }
}

fn start(def: &SagaDefinition, i: usize, attempt: u32, now: DateTime<Utc>) -> Effect {
    Effect::Record(SagaEvent::CompensationStarted {
        step: def.steps[i].name.clone(),
        attempt,
        timeout_at: after(now, def.steps[i].compensation_policy.timeout),
    })
}
