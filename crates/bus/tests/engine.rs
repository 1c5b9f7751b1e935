//! The delivery engine over the in-memory backend: shutdown, filters, typed payloads and
//! per-key ordering as a subscriber sees them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{
    Backend, Bus, DlqQuery, EXT_PARTITION_KEY, FailureReason, Filter, MemoryBackend, PublishOutcome,
};
use flotilla_core::CloudEvent;
use flotilla_core::event::ExtensionValue;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn bus() -> (Bus, MemoryBackend) {
    let mem = MemoryBackend::new();
    (Bus::new(Arc::new(mem.clone())), mem)
}

async fn pending(mem: &MemoryBackend) -> u64 {
    mem.groups().await.unwrap().iter().map(|g| g.pending).sum()
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_handlers_finish_and_settles_each_event_once() {
    let (bus, mem) = bus();
    let shutdown = CancellationToken::new();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&finished);
    let sub = bus
        .subscribe("orders.*")
        .group("billing")
        .concurrency(3)
        .shutdown_on(&shutdown)
        .handler(move |_| {
            let (started_tx, done) = (started_tx.clone(), Arc::clone(&done));
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(5)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
    for _ in 0..3 {
        bus.publish(CloudEvent::new("/o", "orders.created"))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        started.recv().await.unwrap();
    }
    shutdown.cancel();
    sub.join().await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        3,
        "in-flight handlers ran to the end"
    );
    assert_eq!(pending(&mem).await, 0, "every finished event was acked");
    assert!(started.try_recv().is_err(), "nothing was delivered again");
}

#[tokio::test(start_paused = true)]
async fn events_outside_the_filter_are_acked_without_running_the_handler() {
    let (bus, mem) = bus();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("orders.>")
        .group("audit")
        .filter(Filter::all().with_source("/shop"))
        .handler(move |r| {
            let _ = tx.send(r.event.source.clone());
            async { Ok(()) }
        })
        .await
        .unwrap();
    bus.publish(CloudEvent::new("/other", "orders.created"))
        .await
        .unwrap();
    bus.publish(CloudEvent::new("/shop", "orders.created"))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), "/shop");
    sub.stop().await;
    assert!(
        rx.try_recv().is_err(),
        "the filtered-out event never reached the handler"
    );
    assert_eq!(
        pending(&mem).await,
        0,
        "the filtered-out event was settled too"
    );
}

#[derive(Debug, Deserialize)]
struct Order {
    id: u32,
}

#[tokio::test(start_paused = true)]
async fn typed_handlers_get_decoded_payloads_and_dead_letter_ones_that_do_not_fit() {
    let (bus, mem) = bus();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("orders.created")
        .group("typed")
        .typed_handler(move |o: flotilla_bus::Typed<Order>| {
            let _ = tx.send(o.data.id);
            async { Ok(()) }
        })
        .await
        .unwrap();
    bus.publish_json("/shop", "orders.created", &json!({"wrong": true}))
        .await
        .unwrap();
    bus.publish_json("/shop", "orders.created", &json!({"id": 42}))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), 42);
    sub.stop().await;
    let dlq = mem.dlq_list(&DlqQuery::default()).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].reason, dlq[0].attempts),
        (FailureReason::Rejected, 1)
    );
    assert!(
        dlq[0].last_error.contains("does not fit"),
        "{}",
        dlq[0].last_error
    );
}

fn keyed(key: &str, n: u32) -> CloudEvent {
    let mut e = CloudEvent::new("/k", "orders.keyed").with_json(json!({ "n": n }));
    e.set_extension(EXT_PARTITION_KEY, ExtensionValue::String(key.into()))
        .unwrap();
    e
}

#[tokio::test(start_paused = true)]
async fn same_key_events_run_one_at_a_time_in_publish_order_despite_concurrency() {
    let (bus, _mem) = bus();
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (seen2, running2) = (Arc::clone(&seen), Arc::clone(&running));
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("orders.keyed")
        .group("ordered")
        .concurrency(8)
        .handler(move |r| {
            let (seen, running, done_tx) = (seen2.clone(), running2.clone(), done_tx.clone());
            async move {
                let key = r.event.extension_str(EXT_PARTITION_KEY).unwrap().to_owned();
                let n = r.event.json_data().unwrap()["n"].as_u64().unwrap();
                let overlap = {
                    let mut run = running.lock().unwrap();
                    let c = run.entry(key.clone()).or_default();
                    *c += 1;
                    *c
                };
                assert_eq!(overlap, 1, "two events of key {key} ran at once");
                tokio::time::sleep(Duration::from_millis(10 * (n % 3))).await;
                running
                    .lock()
                    .unwrap()
                    .entry(key.clone())
                    .and_modify(|c| *c -= 1);
                seen.lock().unwrap().entry(key).or_default().push(n);
                let _ = done_tx.send(());
                Ok(())
            }
        })
        .await
        .unwrap();
    let batch: Vec<_> = (0..30)
        .map(|n| {
            let e = keyed(["a", "b", "c"][n as usize % 3], n);
            flotilla_bus::Outgoing::new("orders.keyed".parse().unwrap(), e)
        })
        .collect();
    bus.publish_batch(batch).await.unwrap();
    for _ in 0..30 {
        done.recv().await.unwrap();
    }
    sub.stop().await;
    for (key, order) in seen.lock().unwrap().iter() {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, &sorted, "key {key} handled out of publish order");
    }
}

#[tokio::test]
async fn publish_routes_by_event_type_and_refuses_types_that_are_not_topics() {
    let (bus, mem) = bus();
    let out = bus
        .publish(CloudEvent::new("/o", "orders.created"))
        .await
        .unwrap();
    assert_eq!(out, PublishOutcome::Stored);
    let topics = mem.topics().await.unwrap();
    assert_eq!(topics[0].name.as_str(), "orders.created");
    let err = bus
        .publish(CloudEvent::new("/o", "com/example created"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), flotilla_core::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_subscription_without_a_group_is_refused() {
    let (bus, _mem) = bus();
    let err = bus
        .subscribe("orders.*")
        .handler(|_| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("group"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn metrics_count_publishes_deliveries_and_outcomes_per_group() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = flotilla_bus::Metrics::new(&mut registry);
    let (bus, _mem) = bus();
    let bus = bus.with_metrics(metrics);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("orders.*")
        .group("m")
        .handler(move |r| {
            let _ = tx.send(());
            let poison = r.event.subject.is_some();
            async move {
                if poison {
                    Err(flotilla_bus::HandlerError::reject("poison"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap();
    bus.publish(CloudEvent::new("/o", "orders.created"))
        .await
        .unwrap();
    let mut poison = CloudEvent::new("/o", "orders.created");
    poison.subject = Some("bad".into());
    bus.publish(poison).await.unwrap();
    rx.recv().await.unwrap();
    rx.recv().await.unwrap();
    sub.stop().await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = flotilla_testkit::prometheus::parse(&text).unwrap();
    let sum = |name: &str, labels: &[(&str, &str)]| {
        flotilla_testkit::prometheus::sum(&samples, name, labels)
    };
    assert_eq!(
        sum(
            "flotilla_bus_published_total",
            &[("topic", "orders.created")]
        ),
        2.0
    );
    assert_eq!(sum("flotilla_bus_delivered_total", &[("group", "m")]), 2.0);
    assert_eq!(sum("flotilla_bus_acked_total", &[("group", "m")]), 1.0);
    let dead = [("group", "m"), ("reason", "rejected")];
    assert_eq!(sum("flotilla_bus_dead_lettered_total", &dead), 1.0);
    assert_eq!(
        sum("flotilla_bus_handler_seconds_count", &[("group", "m")]),
        2.0
    );
}
