//! The contract's errors for out-of-bounds requests, and how the platform bus splits what
//! it sends, against a real control plane on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use flotilla_bus::{Backend, Error, GroupName, GroupSpec, Outgoing, PublishOutcome};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_platform::bus::{BatchOptions, PlatformBus};
use flotilla_platform::{ConnectOptions, ControlPlane};
use serde_json::json;

fn bus(server: &common::ControlPlane, batching: BatchOptions) -> PlatformBus {
    let cp = ControlPlane::new(ConnectOptions::new(server.url())).unwrap();
    PlatformBus::with_batching(cp, batching)
}

fn outgoing(n: usize) -> Outgoing {
    let e = CloudEvent::new("/requests", "requests.e").with_json(json!({ "n": n }));
    Outgoing::new(TopicName::new("requests.e").unwrap(), e)
}

async fn group(bus: &PlatformBus) -> GroupName {
    let spec = GroupSpec {
        name: GroupName::new("requests").unwrap(),
        pattern: TopicPattern::new("requests.>").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    spec.name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_one_request_is_split_and_answered_in_order() {
    let server = common::ControlPlane::start().await;
    let batching = BatchOptions {
        max_events: 3,
        ..BatchOptions::default()
    };
    let bus = bus(&server, batching);
    let g = group(&bus).await;
    let batch: Vec<Outgoing> = (0..10).map(outgoing).collect();
    let again = batch[4].clone();
    let out = bus.publish(batch).await.unwrap();
    assert_eq!(out, vec![PublishOutcome::Stored; 10]);
    assert_eq!(
        bus.publish(vec![again]).await.unwrap(),
        [PublishOutcome::Duplicate]
    );
    let got = bus
        .receive(&g, 100, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    let numbers: Vec<u64> = got
        .iter()
        .map(|d| d.event.json_data().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..10).collect::<Vec<_>>(),
        "stored in publish order"
    );
    assert!(bus.publish(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_unknown_groups_answer_the_contracts_errors() {
    let server = common::ControlPlane::start().await;
    let bus = bus(&server, BatchOptions::default());
    let g = group(&bus).await;
    let too_long = Duration::from_secs(2 * 24 * 3600);
    let r = bus.receive(&g, 1, too_long, Duration::ZERO).await;
    assert!(
        matches!(&r, Err(Error::InvalidInput(m)) if m.contains("86400000")),
        "{r:?}"
    );
    let late = outgoing(1).deliver_after(Duration::from_secs(400 * 24 * 3600));
    let r = bus.publish(vec![late]).await;
    assert!(matches!(&r, Err(Error::InvalidInput(_))), "{r:?}");
    let big = CloudEvent::new("/requests", "requests.e").with_json(json!("x".repeat(2 << 20)));
    let r = bus
        .publish(vec![Outgoing::new(
            TopicName::new("requests.e").unwrap(),
            big,
        )])
        .await;
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                limit: 1_048_576,
                ..
            })
        ),
        "{r:?}"
    );
    let unknown = GroupName::new("nobody").unwrap();
    let r = bus
        .receive(&unknown, 1, Duration::from_secs(1), Duration::ZERO)
        .await;
    assert!(
        matches!(r, Err(Error::NotFound { what: "group", .. })),
        "{r:?}"
    );
}
