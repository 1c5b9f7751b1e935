//! The orchestrator's semantics, on the in-memory store with paused time and scripted
//! participants that record every call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Reply, World, order_saga, permanent, transient};
use flotilla_saga::{AbortReason, Error, SagaEvent, SagaStatus};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn happy_path_runs_each_step_once_in_order_and_completes() {
    let w = World::new(order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let id = orch
        .start("place-order", json!({"order_id": "o-1"}))
        .await
        .unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    assert_eq!(w.participants.names(), ["reserve", "charge", "confirm"]);
    let keys: Vec<_> = w.participants.calls().into_iter().map(|c| c.key).collect();
    assert_eq!(
        keys,
        [
            format!("{id}:reserve"),
            format!("{id}:charge"),
            format!("{id}:confirm")
        ]
    );
    assert_eq!(end.steps[1].result, Some(json!({"by": "charge"})));
    assert!(matches!(
        w.events(&id).await.last(),
        Some(SagaEvent::Completed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_compensates_exactly_the_completed_steps_in_reverse() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("confirm", vec![permanent("order was withdrawn")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(
        w.participants.names(),
        ["reserve", "charge", "confirm", "refund", "release"]
    );
    let undo_keys: Vec<_> = w.participants.calls()[3..]
        .iter()
        .map(|c| c.key.clone())
        .collect();
    assert_eq!(
        undo_keys,
        [
            format!("{id}:charge:compensation"),
            format!("{id}:reserve:compensation")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_any_step_completes_compensates_nothing() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("reserve", vec![permanent("out of stock")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    assert_eq!(
        orch.wait(&id).await.unwrap().status,
        SagaStatus::Compensated
    );
    assert_eq!(w.participants.names(), ["reserve"]);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_step_failure_is_retried_with_the_same_key() {
    let w = World::new(order_saga(3).build().unwrap());
    w.participants
        .script("charge", vec![transient("503"), transient("503")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    let charges: Vec<_> = w
        .participants
        .calls()
        .into_iter()
        .filter(|c| c.function == "charge")
        .collect();
    assert_eq!(
        charges.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(charges.iter().all(|c| c.key == format!("{id}:charge")));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_step_failure_is_not_retried() {
    let w = World::new(order_saga(3).build().unwrap());
    w.participants
        .script("charge", vec![permanent("card declined")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    assert_eq!(
        orch.wait(&id).await.unwrap().status,
        SagaStatus::Compensated
    );
    assert_eq!(w.participants.names(), ["reserve", "charge", "release"]);
}

#[tokio::test(start_paused = true)]
async fn a_compensation_failing_twice_then_succeeding_ends_compensated() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("charge", vec![permanent("card declined")]);
    w.participants
        .script("release", vec![transient("db down"), transient("db down")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(
        w.participants.names(),
        ["reserve", "charge", "release", "release", "release"]
    );
    assert_eq!(end.steps[0].compensation_attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_compensation_that_always_fails_ends_stuck_never_compensated() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants
        .script("charge", vec![permanent("card declined")]);
    w.participants.always("release", transient("db down"));
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    let SagaStatus::Stuck { step, error } = &end.status else {
        panic!("expected stuck, got {:?}", end.status);
    };
    assert_eq!((step.as_str(), error.as_str()), ("reserve", "db down"));
    assert_eq!(
        w.participants
            .names()
            .iter()
            .filter(|n| *n == "release")
            .count(),
        3
    );
    let events = w.events(&id).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SagaEvent::Compensated { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_that_times_out_is_compensated_as_possibly_done() {
    let w = World::new(order_saga(1).build().unwrap());
    w.participants.script("charge", vec![Reply::Hang]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert!(end.steps[1].possibly_done);
    assert_eq!(
        w.participants.names(),
        ["reserve", "charge", "refund", "release"]
    );
    let timed_out = w.events(&id).await.into_iter().any(|e| {
        matches!(e, SagaEvent::StepFailed { ref step, timed_out: true, .. } if step == "charge")
    });
    assert!(timed_out);
}

#[tokio::test(start_paused = true)]
async fn cancel_compensates_now_including_the_step_in_flight() {
    let mut def = order_saga(1).build().unwrap();
    def.steps[1].policy.timeout = Duration::from_secs(3600);
    let w = World::new(def);
    w.participants.script("charge", vec![Reply::Hang]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    w.participants.called("charge", 1).await;
    let started = tokio::time::Instant::now();
    orch.cancel(&id).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cancel waited for the step"
    );
    assert_eq!(
        w.participants.names(),
        ["reserve", "charge", "refund", "release"]
    );
    let cancelled = w.events(&id).await.into_iter().any(|e| {
        matches!(
            e,
            SagaEvent::Cancelled {
                reason: AbortReason::Cancelled,
                ..
            }
        )
    });
    assert!(cancelled);
    let again = orch.cancel(&id).await.unwrap_err();
    assert!(matches!(again, Error::InvalidState { .. }), "{again:?}");
}

#[tokio::test(start_paused = true)]
async fn the_saga_deadline_fires_after_an_orchestrator_restart() {
    let mut def = order_saga(1)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    def.steps[1].policy.timeout = Duration::from_secs(3600);
    let w = World::new(def);
    w.participants.always("charge", Reply::Hang);
    let first = w.orchestrator();
    let id = first.start("place-order", json!({})).await.unwrap();
    w.participants.called("charge", 1).await;
    drop(first);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let second = w.orchestrator();
    let report = second.recover().await.unwrap();
    assert_eq!(report.resumed, vec![id.clone()]);
    let end = second.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    let took = (end.finished_at.unwrap() - end.started_at)
        .to_std()
        .unwrap();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    assert!(w.events(&id).await.iter().any(|e| {
        matches!(
            e,
            SagaEvent::Cancelled {
                reason: AbortReason::DeadlineExceeded,
                ..
            }
        )
    }));
    assert_eq!(
        &w.participants.names()[2..],
        ["charge", "refund", "release"]
    );
}

#[tokio::test(start_paused = true)]
async fn recover_resumes_an_interrupted_saga_and_skips_finished_ones() {
    let w = World::new(order_saga(1).build().unwrap());
    let first = w.orchestrator();
    let done = first.start("place-order", json!({})).await.unwrap();
    assert_eq!(
        first.wait(&done).await.unwrap().status,
        SagaStatus::Completed
    );
    w.participants.script("charge", vec![Reply::Hang]);
    let cut = first.start("place-order", json!({})).await.unwrap();
    w.participants.called("charge", 2).await;
    drop(first);

    let second = w.orchestrator();
    assert_eq!(second.recover().await.unwrap().resumed, vec![cut.clone()]);
    assert_eq!(
        second.wait(&cut).await.unwrap().status,
        SagaStatus::Completed
    );
    // The interrupted charge ran again, under the same key.
    let charges: Vec<_> = w
        .participants
        .calls()
        .into_iter()
        .filter(|c| c.saga_id == cut && c.function == "charge")
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].key, charges[1].key);
}

#[tokio::test(start_paused = true)]
async fn after_the_pivot_the_saga_only_goes_forward() {
    let def = order_saga(1).pivot("charge").build().unwrap();
    let w = World::new(def);
    w.participants
        .script("confirm", vec![Reply::After(Duration::from_secs(5))]);
    w.participants
        .always("confirm", permanent("order service refuses"));
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    w.participants.called("confirm", 1).await;
    let refused = orch.cancel(&id).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidState { .. }), "{refused:?}");
    // The first confirm times out (1s), the retry budget is one attempt: stuck, not undone.
    let end = orch.wait(&id).await.unwrap();
    assert!(matches!(end.status, SagaStatus::Stuck { ref step, .. } if step == "confirm"));
    assert_eq!(w.participants.names(), ["reserve", "charge", "confirm"]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_no_longer_binds_after_the_pivot() {
    let mut def = order_saga(1)
        .pivot("charge")
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    def.steps[2].policy.timeout = Duration::from_secs(60);
    let w = World::new(def);
    w.participants
        .script("confirm", vec![Reply::After(Duration::from_secs(30))]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    let took = (end.finished_at.unwrap() - end.started_at)
        .to_std()
        .unwrap();
    assert!(took >= Duration::from_secs(30), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_last_attempt_failed_retryably_is_compensated_as_possibly_done() {
    let w = World::new(order_saga(1).build().unwrap());
    // The payment may have gone through and only the answer been lost.
    w.participants
        .script("charge", vec![transient("connection reset")]);
    let orch = w.orchestrator();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert!(end.steps[1].possibly_done);
    assert_eq!(
        w.participants.names(),
        ["reserve", "charge", "refund", "release"]
    );
}
