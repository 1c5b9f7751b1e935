//! Two orchestrators driving the same instances on one store: the expected version fences
//! every transition, so no transition is ever recorded twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Reply, World, order_saga, permanent};
use flotilla_saga::{SagaEvent, SagaStatus};
use serde_json::json;

/// The identity of a transition: a second event with the same identity would mean two
/// replicas both recorded it.
fn transition(e: &SagaEvent) -> String {
    match e {
        SagaEvent::StepStarted { step, attempt, .. }
        | SagaEvent::StepSucceeded { step, attempt, .. }
        | SagaEvent::StepFailed { step, attempt, .. }
        | SagaEvent::CompensationStarted { step, attempt, .. }
        | SagaEvent::CompensationSucceeded { step, attempt }
        | SagaEvent::CompensationFailed { step, attempt, .. } => {
            format!("{} {step} {attempt}", e.kind())
        }
        SagaEvent::Completed { .. } | SagaEvent::Compensated { .. } | SagaEvent::Stuck { .. } => {
            "end".into()
        }
        other => other.kind().into(),
    }
}

#[tokio::test(start_paused = true)]
async fn two_orchestrators_racing_never_both_record_a_transition() {
    let w = World::new(order_saga(1).build().unwrap());
    // Every call takes a moment, so both drivers are inside the same step at once.
    for f in ["reserve", "charge", "confirm", "release", "refund"] {
        w.participants
            .always(f, Reply::After(Duration::from_millis(10)));
    }
    // Every third saga fails at confirm and compensates.
    let a = w.orchestrator();
    let b = w.orchestrator();
    let mut ids = Vec::new();
    for i in 0..30 {
        if i % 3 == 0 {
            w.participants.script("confirm", vec![permanent("refused")]);
        }
        let id = a.start("place-order", json!({ "n": i })).await.unwrap();
        w.participants.called("reserve", i + 1).await;
        ids.push(id);
    }
    let report = b.recover().await.unwrap();
    assert_eq!(
        report.resumed.len(),
        ids.len(),
        "b drives every instance a drives"
    );

    for id in &ids {
        let end_a = a.wait(id).await.unwrap();
        let end_b = b.wait(id).await.unwrap();
        assert_eq!(end_a, end_b);
        assert!(matches!(
            end_a.status,
            SagaStatus::Completed | SagaStatus::Compensated
        ));
        let events = w.events(id).await;
        let mut seen = HashSet::new();
        for e in &events {
            assert!(
                seen.insert(transition(e)),
                "{id}: {} recorded twice",
                transition(e)
            );
        }
    }
    // Both drivers really ran steps: some calls were made twice under one key.
    let calls = w.participants.calls();
    let keys: HashSet<_> = calls.iter().map(|c| (c.key.clone(), c.attempt)).collect();
    assert!(
        keys.len() < calls.len(),
        "the two orchestrators never overlapped"
    );
}
