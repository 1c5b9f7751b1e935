//! The consumer-lag gauges follow the backend's groups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla_broker::{Broker, Options};
use flotilla_bus::{
    Backend, Failure, FailureReason, GroupName, GroupSpec, MemoryBackend, Outgoing,
};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

#[tokio::test(start_paused = true)]
async fn lag_and_dead_letters_are_gauges_per_group_and_vanish_with_the_group() {
    let backend = Arc::new(MemoryBackend::new());
    let group = GroupName::new("billing").unwrap();
    let spec = GroupSpec {
        name: group.clone(),
        pattern: TopicPattern::new("orders.*").unwrap(),
    };
    backend.declare_group(&spec).await.unwrap();
    let topic = TopicName::new("orders.created").unwrap();
    let batch = (0..3)
        .map(|_| Outgoing::new(topic.clone(), CloudEvent::new("/shop", "orders.created")))
        .collect();
    backend.publish(batch).await.unwrap();
    let got = backend
        .receive(&group, 1, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    let failure = Failure {
        reason: FailureReason::Rejected,
        last_error: "bad".into(),
    };
    backend.dead_letter(&got[0].receipt, failure).await.unwrap();

    let options = Options {
        lag_refresh_ms: 1000,
        ..Options::default()
    };
    let broker = Broker::new(options, backend.clone()).unwrap();
    let mut registry = Registry::default();
    broker.register_metrics(&mut registry);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (b, s) = (broker.clone(), shutdown.clone());
        async move { b.run(s).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = text(&registry);
    assert!(
        shown.contains("flotilla_bus_consumer_lag{group=\"billing\"} 2"),
        "{shown}"
    );
    assert!(
        shown.contains("flotilla_bus_dead_letters{group=\"billing\"} 1"),
        "{shown}"
    );

    backend.delete_group(&group).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let shown = text(&registry);
    assert!(!shown.contains("group=\"billing\""), "{shown}");
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
