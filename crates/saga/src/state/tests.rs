//! The pure state machine by hand: events in, effects out, no driver, no clock.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::*;
use crate::definition::{Action, SagaDefinition, StepBuilder, StepPolicy};
use crate::event::{AbortReason, SagaEvent};

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
}

fn def(deadline: Option<u64>) -> SagaDefinition {
    let policy = StepPolicy {
        timeout: Duration::from_secs(1),
        max_attempts: 2,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
    };
    let step = |n: &str| StepBuilder::new(n, Action::function(n)).policy(policy);
    let mut b = SagaDefinition::builder("s", 1)
        .step(step("a").compensate(Action::function("undo")))
        .step(step("b"))
        .step(step("c").compensate(Action::function("undo")));
    if let Some(d) = deadline {
        b = b.deadline(Duration::from_secs(d));
    }
    b.build().unwrap()
}

fn started(def: &SagaDefinition) -> SagaState {
    let e = SagaEvent::Started {
        definition: "s".into(),
        version: 1,
        steps: def.steps.iter().map(|s| s.name.clone()).collect(),
        data: json!({}),
        at: t(0),
        deadline: def.deadline.map(|d| after(t(0), d)),
    };
    SagaState::start("s-1", &e).unwrap()
}

/// Applies whatever `decide` records at each time in `times` (one decision per time).
fn run(mut state: SagaState, def: &SagaDefinition, times: &[i64]) -> SagaState {
    for &now in times {
        if let Effect::Record(e) = decide(&state, def, t(now)) {
            state = state.apply(&e).unwrap();
        }
    }
    state
}

fn succeed(state: SagaState, step: &str) -> SagaState {
    let e = SagaEvent::StepSucceeded {
        step: step.into(),
        attempt: 1,
        result: json!(1),
    };
    state.apply(&e).unwrap()
}

#[test]
fn an_attempt_whose_timeout_passed_while_nobody_ran_it_is_recorded_as_timed_out() {
    let d = def(None);
    let state = run(started(&d), &d, &[0]);
    assert!(matches!(
        decide(&state, &d, t(0)),
        Effect::RunStep {
            step: 0,
            attempt: 1,
            ..
        }
    ));
    let Effect::Record(SagaEvent::StepFailed {
        timed_out,
        retry_at,
        ..
    }) = decide(&state, &d, t(5))
    else {
        panic!("expected a timed-out failure");
    };
    assert!(timed_out);
    assert!(retry_at.is_some_and(|r| r >= t(5) && r <= t(6)));
}

#[test]
fn a_retry_wait_is_cut_short_by_the_deadline() {
    let d = def(Some(3));
    let state = run(started(&d), &d, &[0]);
    let failed = step_outcome(
        &state,
        &d,
        0,
        1,
        Err(crate::StepError::retryable("x")),
        t(2),
    );
    let state = state.apply(&failed).unwrap();
    match decide(&state, &d, t(2)) {
        Effect::Wait { until } => assert!(until <= t(3)),
        other => panic!("expected a wait, got {other:?}"),
    }
    let cancel = decide(&state, &d, t(3));
    assert!(matches!(
        cancel,
        Effect::Record(SagaEvent::Cancelled {
            reason: AbortReason::DeadlineExceeded,
            ..
        })
    ));
}

#[test]
fn a_cancel_undoes_the_step_in_flight_first_and_skips_steps_without_compensation() {
    let d = def(None);
    // a and b succeed, c is in flight when the cancel lands.
    let state = succeed(succeed(run(started(&d), &d, &[0]), "a"), "b");
    let state = run(state, &d, &[0]);
    assert!(matches!(state.steps[2].phase, Phase::Running { .. }));
    let cancel = SagaEvent::Cancelled {
        reason: AbortReason::Cancelled,
        at: t(0),
    };
    let state = state.apply(&cancel).unwrap();
    assert!(state.steps[2].possibly_done);
    let first = decide(&state, &d, t(0));
    assert!(
        matches!(first, Effect::Record(SagaEvent::CompensationStarted { ref step, .. }) if step == "c"),
        "{first:?}"
    );
    let done = SagaEvent::CompensationSucceeded {
        step: "c".into(),
        attempt: 1,
    };
    let state = run(state, &d, &[0]).apply(&done).unwrap();
    // b has no compensation: a is next.
    let next = decide(&state, &d, t(0));
    assert!(
        matches!(next, Effect::Record(SagaEvent::CompensationStarted { ref step, .. }) if step == "a"),
        "{next:?}"
    );
}

#[test]
fn a_step_that_failed_without_timing_out_is_not_compensated() {
    let d = def(None);
    let state = run(started(&d), &d, &[0]);
    let failed = step_outcome(
        &state,
        &d,
        0,
        1,
        Err(crate::StepError::permanent("no")),
        t(0),
    );
    let state = run(state.apply(&failed).unwrap(), &d, &[0]);
    assert!(matches!(
        state.status,
        SagaStatus::Compensating {
            reason: AbortReason::StepFailed
        }
    ));
    assert!(matches!(
        decide(&state, &d, t(0)),
        Effect::Record(SagaEvent::Compensated { .. })
    ));
}

#[test]
fn events_for_unknown_steps_are_refused() {
    let d = def(None);
    let e = SagaEvent::StepSucceeded {
        step: "zzz".into(),
        attempt: 1,
        result: json!(null),
    };
    assert!(started(&d).apply(&e).unwrap_err().contains("zzz"));
}

#[test]
fn a_retry_after_the_pivot_runs_the_stuck_step_again_with_a_fresh_budget() {
    let mut d = def(None);
    d.pivot = Some("a".into());
    let state = succeed(run(started(&d), &d, &[0]), "a");
    assert!(
        state
            .clone()
            .apply(&SagaEvent::Retried { at: t(1) })
            .is_err()
    );
    let mut state = run(state, &d, &[1]);
    for attempt in 1..=2 {
        let e = crate::StepError::retryable("down");
        let failed = step_outcome(&state, &d, 1, attempt, Err(e), t(1));
        state = state.apply(&failed).unwrap();
        state = run(state, &d, &[5]);
    }
    assert!(
        matches!(state.status, SagaStatus::Stuck { .. }),
        "{state:?}"
    );
    let state = state.apply(&SagaEvent::Retried { at: t(10) }).unwrap();
    assert_eq!(state.status, SagaStatus::Running);
    assert_eq!(state.finished_at, None);
    let state = run(state, &d, &[10]);
    assert_eq!(state.steps[1].attempts, 3);
    let e = crate::StepError::retryable("still down");
    let failed = step_outcome(&state, &d, 1, 3, Err(e), t(10));
    assert!(
        matches!(
            failed,
            SagaEvent::StepFailed {
                retry_at: Some(_),
                ..
            }
        ),
        "the retry's first failure has another attempt left: {failed:?}"
    );
}

fn kinds(events: &[SagaEvent]) -> Vec<&'static str> {
    events.iter().map(SagaEvent::kind).collect()
}

#[test]
fn a_success_is_recorded_with_the_next_steps_start_and_the_last_with_the_end() {
    let d = def(None);
    let state = run(started(&d), &d, &[0]);
    let ok = |s: &SagaState, i| step_outcome(s, &d, i, 1, Ok(json!(i)), t(0));
    let batch = with_follow_ups(&state, &d, ok(&state, 0), t(0));
    assert_eq!(kinds(&batch), ["StepSucceeded", "StepStarted"]);
    let state = batch.iter().fold(state, |s, e| s.apply(e).unwrap());
    let state = run(succeed(state, "b"), &d, &[0]);
    let batch = with_follow_ups(&state, &d, ok(&state, 2), t(0));
    assert_eq!(kinds(&batch), ["StepSucceeded", "SagaCompleted"]);
}

#[test]
fn a_failure_to_retry_later_is_recorded_alone_and_a_final_one_turns_back_at_once() {
    let d = def(None);
    let state = run(started(&d), &d, &[0]);
    let e = crate::StepError::retryable("down");
    let first = step_outcome(&state, &d, 0, 1, Err(e), t(0));
    assert_eq!(
        kinds(&with_follow_ups(&state, &d, first, t(0))),
        ["StepFailed"]
    );
    // c fails for good: the saga turns back and a's compensation starts in the same write.
    let state = succeed(succeed(state, "a"), "b");
    let state = run(state, &d, &[0]);
    let e = crate::StepError::permanent("no");
    let last = step_outcome(&state, &d, 2, 1, Err(e), t(0));
    let batch = with_follow_ups(&state, &d, last, t(0));
    assert_eq!(
        kinds(&batch),
        ["StepFailed", "SagaCancelled", "CompensationStarted"]
    );
    assert!(
        matches!(&batch[2], SagaEvent::CompensationStarted { step, .. } if step == "a"),
        "c failed for good and b has no compensation: {batch:?}"
    );
}

/// a, then b and c together (both undoable), then d.
fn grouped() -> SagaDefinition {
    let policy = StepPolicy {
        timeout: Duration::from_secs(1),
        max_attempts: 1,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
    };
    let step = |n: &str| {
        StepBuilder::new(n, Action::function(n))
            .policy(policy)
            .compensate(Action::function("undo"))
    };
    SagaDefinition::builder("s", 1)
        .step(step("a"))
        .step(step("b").group("pay"))
        .step(step("c").group("pay"))
        .step(step("d"))
        .build()
        .unwrap()
}

fn apply_all(state: SagaState, events: &[SagaEvent]) -> SagaState {
    events.iter().fold(state, |s, e| s.apply(e).unwrap())
}

#[test]
fn a_groups_steps_start_in_one_write_and_run_together() {
    let d = grouped();
    let state = run(started(&d), &d, &[0]);
    let ok_a = step_outcome(&state, &d, 0, 1, Ok(json!(1)), t(0));
    let batch = with_follow_ups(&state, &d, ok_a, t(0));
    assert_eq!(
        kinds(&batch),
        ["StepSucceeded", "StepStarted", "StepStarted"]
    );
    let state = apply_all(state, &batch);
    match decide(&state, &d, t(0)) {
        Effect::RunGroup {
            compensation: false,
            runs,
        } => assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]),
        other => panic!("expected b and c together, got {other:?}"),
    }
    // c answers first: b still runs, so nothing follows c's success.
    let ok_c = step_outcome(&state, &d, 2, 1, Ok(json!(3)), t(0));
    assert_eq!(
        kinds(&with_follow_ups(&state, &d, ok_c.clone(), t(0))),
        ["StepSucceeded"]
    );
    let state = state.apply(&ok_c).unwrap();
    assert!(matches!(
        decide(&state, &d, t(0)),
        Effect::RunStep { step: 1, .. }
    ));
}

#[test]
fn a_groups_steps_are_compensated_together_and_a_failing_member_undoes_its_running_sibling() {
    let d = grouped();
    let state = succeed(run(started(&d), &d, &[0]), "a");
    let state = run(succeed(succeed(run(state, &d, &[0]), "b"), "c"), &d, &[0]);
    let e = crate::StepError::permanent("no");
    let failed = step_outcome(&state, &d, 3, 1, Err(e), t(0));
    let batch = with_follow_ups(&state, &d, failed, t(0));
    assert_eq!(
        kinds(&batch),
        [
            "StepFailed",
            "SagaCancelled",
            "CompensationStarted",
            "CompensationStarted"
        ]
    );
    let state = apply_all(state, &batch);
    assert!(matches!(
        decide(&state, &d, t(0)),
        Effect::RunGroup {
            compensation: true,
            ..
        }
    ));

    // Another instance: c fails for good while b is in flight; b may have taken effect.
    let state = run(succeed(run(started(&d), &d, &[0]), "a"), &d, &[0, 0]);
    let e = crate::StepError::permanent("no");
    let failed = step_outcome(&state, &d, 2, 1, Err(e), t(0));
    let state = apply_all(state.clone(), &with_follow_ups(&state, &d, failed, t(0)));
    assert!(state.steps[1].possibly_done);
    assert!(
        matches!(state.steps[1].compensation, Phase::Running { .. }),
        "{state:?}"
    );
    assert_eq!(state.steps[2].compensation, Phase::Pending);
}
