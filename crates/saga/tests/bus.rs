//! Bus-command steps on the in-memory bus: a participant that consumes commands, dedupes by
//! the idempotency key and replies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{Bus, MemoryBackend, Received, Subscription};
use flotilla_core::CloudEvent;
use flotilla_core::event::ExtensionValue;
use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::action::{EXT_IDEMPOTENCY_KEY, EXT_OUTCOME};
use flotilla_saga::{Orchestrator, SagaDefinition, SagaStatus};
use serde_json::{Value, json};

const SAGA: &str = r#"
name = "place-order"
version = 1

[[steps]]
name = "reserve"
timeout = "2s"
[steps.action.bus]
topic = "inventory.reserve"
reply_topic = "saga.replies"
data = { order_id = "{{data.order_id}}", qty = "{{data.qty}}" }
[steps.compensation.bus]
topic = "inventory.release"
reply_topic = "saga.replies"
data = { reservation = "{{steps.reserve.result.id}}" }

[[steps]]
name = "charge"
timeout = "2s"
retry = { max_attempts = 1 }
[steps.action.bus]
topic = "payments.charge"
reply_topic = "saga.replies"
"#;

/// What the participant received: (topic, idempotency key, correlation id, data).
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

/// Replies to every command (but loses its first reply when `lose_first`); payments decline;
/// each key is applied once and its first answer replayed on a repeat.
async fn participant(bus: &Bus, seen: Seen, lose_first: bool) -> Subscription {
    let replies: Arc<Mutex<HashMap<String, CloudEvent>>> = Arc::default();
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(!lose_first));
    let b = bus.clone();
    bus.subscribe(">")
        .group("participant")
        .handler(move |r: Received| {
            let (bus, seen, replies, lost) =
                (b.clone(), seen.clone(), replies.clone(), lost.clone());
            async move {
                if r.topic.as_str() == "saga.replies" {
                    return Ok(());
                }
                let key = r
                    .event
                    .extension_str(EXT_IDEMPOTENCY_KEY)
                    .unwrap()
                    .to_owned();
                let corr = r.event.correlation_id().unwrap_or_default().to_owned();
                let data = r.event.json_data().cloned().unwrap_or(Value::Null);
                seen.lock()
                    .unwrap()
                    .push((r.topic.to_string(), key.clone(), corr, data));
                let reply = replies
                    .lock()
                    .unwrap()
                    .entry(key.clone())
                    .or_insert_with(|| answer(&r, &key))
                    .clone();
                if !lost.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
                bus.publish_to("saga.replies".parse().unwrap(), reply)
                    .await?;
                Ok(())
            }
        })
        .await
        .unwrap()
}

fn answer(r: &Received, key: &str) -> CloudEvent {
    let mut reply = CloudEvent::new("/participant", "saga.reply")
        .with_correlation_id(r.event.correlation_id().unwrap_or_default());
    reply
        .set_extension(EXT_IDEMPOTENCY_KEY, ExtensionValue::String(key.into()))
        .unwrap();
    if r.topic.as_str() == "payments.charge" {
        reply
            .set_extension(EXT_OUTCOME, ExtensionValue::String("failed".into()))
            .unwrap();
        return reply.with_json(json!({"error": "card declined"}));
    }
    reply.with_json(json!({"id": "r-9"}))
}

#[tokio::test(start_paused = true)]
async fn bus_steps_publish_commands_and_take_the_replies_as_results() {
    let bus = Bus::new(Arc::new(MemoryBackend::new()));
    let seen = Seen::default();
    let _participant = participant(&bus, seen.clone(), false).await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let orch = Orchestrator::builder(store)
        .bus(bus.clone())
        .saga(SagaDefinition::from_toml(SAGA).unwrap())
        .build()
        .unwrap();
    let id = orch
        .start("place-order", json!({"order_id": "o-1", "qty": 2}))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), orch.wait(&id))
        .await
        .expect("the saga ends")
        .unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(end.steps[0].result, Some(json!({"id": "r-9"})));
    assert_eq!(end.steps[1].error.as_deref(), Some("card declined"));

    let seen = seen.lock().unwrap().clone();
    let topics: Vec<_> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        topics,
        ["inventory.reserve", "payments.charge", "inventory.release"]
    );
    assert_eq!(seen[0].1, format!("{id}:reserve"));
    assert_eq!(seen[0].2, id);
    assert_eq!(seen[0].3, json!({"order_id": "o-1", "qty": 2}));
    assert_eq!(seen[2].1, format!("{id}:reserve:compensation"));
    assert_eq!(seen[2].3, json!({"reservation": "r-9"}));
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_times_the_attempt_out_and_the_retry_gets_the_replayed_answer() {
    let bus = Bus::new(Arc::new(MemoryBackend::new()));
    let seen = Seen::default();
    let _participant = participant(&bus, seen.clone(), true).await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let orch = Orchestrator::builder(store)
        .bus(bus.clone())
        .saga(SagaDefinition::from_toml(SAGA).unwrap())
        .build()
        .unwrap();
    let id = orch
        .start("place-order", json!({"order_id": "o-1", "qty": 2}))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(60), orch.wait(&id))
        .await
        .expect("the saga ends")
        .unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(end.steps[0].attempts, 2);
    assert_eq!(end.steps[0].result, Some(json!({"id": "r-9"})));
    let seen = seen.lock().unwrap().clone();
    let reserves: Vec<_> = seen.iter().filter(|s| s.0 == "inventory.reserve").collect();
    assert_eq!(reserves.len(), 2);
    assert_eq!(reserves[0].1, reserves[1].1);
}
