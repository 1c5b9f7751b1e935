//! Definitions: the declarative formats and the Rust builder agree, validation names the bad
//! field, and versions are kept apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::ServiceName;
use flotilla_discovery::StaticDiscovery;
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::{
    Action, Error, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepPolicy,
};
use http::Method;
use serde_json::json;

const ORDER_TOML: &str = include_str!("fixtures/place-order.toml");

fn svc(name: &str) -> ServiceName {
    ServiceName::new(name).unwrap()
}

/// The same saga as fixtures/place-order.toml, in Rust.
fn order_in_rust() -> SagaDefinition {
    let reserve = StepBuilder::new(
        "reserve",
        Action::http(
            svc("inventory"),
            Method::POST,
            "/reservations",
            Some(json!({"order_id": "{{data.order_id}}", "items": "{{data.items}}"})),
        ),
    )
    .compensate(Action::http(
        svc("inventory"),
        Method::DELETE,
        "/reservations/{{steps.reserve.key}}",
        None,
    ))
    .policy(StepPolicy {
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    });
    let body = json!({"order_id": "{{data.order_id}}", "amount": "{{data.amount}}",
                      "reservation": "{{steps.reserve.result.id}}"});
    let charge = StepBuilder::new(
        "charge",
        Action::http(svc("payments"), Method::POST, "/payments", Some(body)),
    )
    .compensate(Action::http(
        svc("payments"),
        Method::POST,
        "/refunds",
        Some(json!({"payment_key": "{{steps.charge.key}}"})),
    ))
    .policy(StepPolicy {
        timeout: Duration::from_secs(10),
        max_attempts: 2,
        ..StepPolicy::STEP
    })
    .compensation_policy(StepPolicy {
        max_attempts: 20,
        max_delay: Duration::from_secs(60),
        ..StepPolicy::COMPENSATION
    });
    let path = "/orders/{{data.order_id}}/confirm";
    let confirm = StepBuilder::new(
        "confirm",
        Action::http(svc("orders"), Method::POST, path, None),
    )
    .policy(StepPolicy {
        max_attempts: 10,
        max_delay: Duration::from_secs(30),
        ..StepPolicy::STEP
    });
    SagaDefinition::builder("place-order", 1)
        .deadline(Duration::from_secs(300))
        .pivot("charge")
        .step(reserve)
        .step(charge)
        .step(confirm)
        .build()
        .unwrap()
}

#[test]
fn the_toml_file_the_json_file_and_the_builder_give_the_same_saga() {
    let from_toml = SagaDefinition::from_toml(ORDER_TOML).unwrap();
    let as_json = serde_json::to_string(&toml::from_str::<serde_json::Value>(ORDER_TOML).unwrap());
    let from_json = SagaDefinition::from_json(&as_json.unwrap()).unwrap();
    assert_eq!(from_toml, order_in_rust());
    assert_eq!(from_json, from_toml);
}

/// Edits the fixture with `edit` and returns the field the error names.
fn bad_field(from: &str, to: &str) -> String {
    assert!(ORDER_TOML.contains(from), "fixture lacks {from:?}");
    match SagaDefinition::from_toml(&ORDER_TOML.replacen(from, to, 1)) {
        Err(Error::Definition { field, .. }) => field,
        other => panic!("{from:?} -> {to:?}: {other:?}"),
    }
}

#[test]
fn validation_errors_name_the_bad_field() {
    let cases = [
        ("name = \"place-order\"", "name = \"Place Order\"", "name"),
        ("version = 1", "version = 0", "version"),
        ("pivot = \"charge\"", "pivot = \"ship\"", "pivot"),
        (
            "timeout = \"5s\"",
            "timeout = \"5 parsecs\"",
            "steps[0].timeout",
        ),
        ("timeout = \"10s\"", "timeout = \"0s\"", "steps[1].timeout"),
        (
            "max_attempts = 2",
            "max_attempts = 0",
            "steps[1].retry.max_attempts",
        ),
        (
            "base_delay = \"100ms\"",
            "base_delay = \"9s\"",
            "steps[0].retry.base_delay",
        ),
        ("name = \"charge\"", "name = \"reserve\"", "steps[1].name"),
        (
            "method = \"DELETE\"",
            "method = \"DEL ETE\"",
            "steps[0].compensation.http.method",
        ),
        (
            "service = \"orders\"",
            "service = \"Orders\"",
            "steps[2].action.http.service",
        ),
        (
            "path = \"/payments\"",
            "path = \"payments\"",
            "steps[1].action.http.path",
        ),
        (
            "{{data.order_id}}/confirm",
            "{{data.order_id/confirm",
            "steps[2].action.http.path",
        ),
        (
            "{{data.items}}",
            "{{steps.charge.result}}",
            "steps[0].action.http.body",
        ),
        (
            "{{steps.reserve.result.id}}",
            "{{env.SECRET}}",
            "steps[1].action.http.body",
        ),
    ];
    for (from, to, field) in cases {
        assert_eq!(bad_field(from, to), field, "{from:?} -> {to:?}");
    }
}

#[test]
fn unknown_keys_are_refused_when_parsing() {
    let text = ORDER_TOML.replacen("deadline = \"5m\"", "dedline = \"5m\"", 1);
    let err = SagaDefinition::from_toml(&text).unwrap_err();
    assert!(
        matches!(&err, Error::Parse(m) if m.contains("dedline")),
        "{err:?}"
    );
}

fn store() -> Arc<dyn EventStore> {
    Arc::new(MemoryEventStore::new())
}

fn field_of(r: Result<Orchestrator, Error>) -> String {
    match r {
        Err(Error::Definition { field, .. }) => field,
        other => panic!("expected a definition error, got {other:?}"),
    }
}

#[test]
fn the_orchestrator_refuses_sagas_it_could_not_run() {
    let order = SagaDefinition::from_toml(ORDER_TOML).unwrap();
    let no_discovery = Orchestrator::builder(store()).saga(order.clone()).build();
    assert_eq!(field_of(no_discovery), "steps[0].action.http");

    let with_function = SagaDefinition::builder("s", 1)
        .step(StepBuilder::new("a", Action::function("missing")))
        .build()
        .unwrap();
    let unknown = Orchestrator::builder(store()).saga(with_function).build();
    assert_eq!(field_of(unknown), "steps[0].action.function");

    let bus = r#"{"name": "s", "version": 1, "steps": [{"name": "a",
        "action": {"bus": {"topic": "inventory.reserve", "reply_topic": "inventory.reserved"}}}]}"#;
    let bus = SagaDefinition::from_json(bus).unwrap();
    let refused = Orchestrator::builder(store()).saga(bus).build();
    assert_eq!(field_of(refused), "steps[0].action.bus");

    let ok = Orchestrator::builder(store())
        .discovery(Arc::new(StaticDiscovery::new()))
        .saga(order)
        .build();
    assert!(ok.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_running_instance_finishes_on_the_version_it_started_with() {
    let w = common::World::new(common::order_saga(1).build().unwrap());
    w.participants.script(
        "charge",
        vec![common::Reply::After(Duration::from_millis(500))],
    );
    let orch = w.orchestrator();
    let old = orch.start("place-order", json!({})).await.unwrap();
    w.participants.called("charge", 1).await;

    let mut v2 = common::order_saga(1).build().unwrap();
    v2.version = 2;
    v2.steps.pop(); // version 2 no longer confirms
    orch.register(v2).unwrap();
    let new = orch.start("place-order", json!({})).await.unwrap();

    let (old, new) = (
        orch.wait(&old).await.unwrap(),
        orch.wait(&new).await.unwrap(),
    );
    assert_eq!((old.version, new.version), (1, 2));
    assert_eq!(
        (&old.status, &new.status),
        (&SagaStatus::Completed, &SagaStatus::Completed)
    );
    let confirms = w
        .participants
        .calls()
        .into_iter()
        .filter(|c| c.function == "confirm");
    assert_eq!(confirms.map(|c| c.saga_id).collect::<Vec<_>>(), [old.id]);
}

#[test]
fn reregistering_a_version_with_other_steps_is_refused() {
    let w = common::World::new(common::order_saga(1).build().unwrap());
    let orch = w.orchestrator();
    let mut changed = common::order_saga(1).build().unwrap();
    changed.steps.pop();
    let err = orch.register(changed).unwrap_err();
    assert!(
        matches!(err, Error::Definition { ref field, .. } if field == "version"),
        "{err:?}"
    );
}
