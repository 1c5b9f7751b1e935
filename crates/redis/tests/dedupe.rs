//! Publisher dedupe against the Redis server on this machine, beyond the conformance suite:
//! the dedupe keys an earlier version wrote, batches longer than the script's slices, and the
//! end of the window. Each case runs under a prefix of its own and deletes its keys.

use std::time::Duration;

use flotilla_bus::{Backend as _, GroupName, GroupSpec, Outgoing, PublishOutcome};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_redis::{Options, RedisBackend};
use flotilla_testkit::{Backend, backend, unique_name};
use redis::AsyncCommands as _;

struct Case {
    bus: RedisBackend,
    raw: redis::aio::MultiplexedConnection,
    prefix: String,
    topic: TopicName,
    group: GroupName,
}

impl Case {
    async fn new(suite: &str, window: Duration) -> Option<Self> {
        let url = backend(Backend::Redis, suite)?;
        let prefix = unique_name("flotilla_dd");
        let opts = Options {
            url: url.clone(),
            prefix: prefix.clone(),
            dedupe_window: window,
            ..Options::default()
        };
        let bus = RedisBackend::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("connect to Redis: {e}"));
        let raw = redis::Client::open(url)
            .unwrap_or_else(|e| panic!("Redis client: {e}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connect to Redis: {e}"));
        let topic = TopicName::new("dedupe.events").expect("topic");
        let group = GroupName::new("g").expect("group");
        let spec = GroupSpec {
            name: group.clone(),
            pattern: TopicPattern::new("dedupe.events").expect("pattern"),
        };
        bus.declare_group(&spec).await.expect("declare");
        Some(Self {
            bus,
            raw,
            prefix,
            topic,
            group,
        })
    }

    fn outgoing(&self, e: &CloudEvent) -> Outgoing {
        Outgoing::new(self.topic.clone(), e.clone())
    }

    async fn stored(&mut self) -> u64 {
        let key = format!("{}:s:{}", self.prefix, self.group);
        self.raw.xlen(key).await.expect("XLEN")
    }

    async fn cleanup(mut self) {
        self.bus
            .delete_group(&self.group)
            .await
            .expect("delete group");
        let keys: Vec<String> = self
            .raw
            .keys(format!("{}:*", self.prefix))
            .await
            .expect("KEYS");
        for k in keys {
            let _: i64 = self.raw.del(k).await.expect("DEL");
        }
    }
}

fn event(n: usize) -> CloudEvent {
    CloudEvent::new("/flotilla/dedupe", "dedupe.test").with_json(serde_json::json!({ "n": n }))
}

/// A publisher of the previous version kept one string key per event,
/// `<prefix>:dd:<source> <id>`, with the window as its TTL; a duplicate of such an event
/// is still dropped.
#[tokio::test]
async fn a_dedupe_key_of_the_previous_version_still_drops_the_duplicate() {
    let Some(mut case) = Case::new("redis legacy dedupe keys", Duration::from_secs(60)).await
    else {
        return;
    };
    let (old, new) = (event(1), event(2));
    let legacy = format!("{}:dd:{} {}", case.prefix, old.source, old.id);
    let _: () = redis::cmd("SET")
        .arg(&legacy)
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut case.raw)
        .await
        .expect("SET");
    let got = case
        .bus
        .publish(vec![case.outgoing(&old), case.outgoing(&new)])
        .await
        .expect("publish");
    assert_eq!(got, [PublishOutcome::Duplicate, PublishOutcome::Stored]);
    assert_eq!(case.stored().await, 1);
    case.cleanup().await;
}

/// A batch far longer than the script's slices of a thousand, each event in it twice and a
/// few published before: every first copy of a new event is stored, everything else dropped.
#[tokio::test]
async fn a_long_batch_with_repeats_is_deduped_within_itself_and_against_the_window() {
    let Some(mut case) = Case::new("redis long batch dedupe", Duration::from_secs(60)).await else {
        return;
    };
    let events: Vec<CloudEvent> = (0..1_300).map(event).collect();
    let before: Vec<Outgoing> = events[..100].iter().map(|e| case.outgoing(e)).collect();
    let got = case.bus.publish(before).await.expect("publish");
    assert!(got.iter().all(|o| *o == PublishOutcome::Stored), "{got:?}");
    let batch: Vec<Outgoing> = events
        .iter()
        .chain(events.iter())
        .map(|e| case.outgoing(e))
        .collect();
    let got = case.bus.publish(batch).await.expect("publish");
    let stored: Vec<usize> = (0..got.len())
        .filter(|&i| got[i] == PublishOutcome::Stored)
        .collect();
    assert_eq!(stored, (100..1_300).collect::<Vec<_>>());
    assert_eq!(case.stored().await, 1_300);
    case.cleanup().await;
}

/// Once the window has ended, the same `(source, id)` is stored again.
#[tokio::test]
async fn after_the_window_the_same_event_is_stored_again() {
    let Some(mut case) = Case::new("redis dedupe window end", Duration::from_millis(50)).await
    else {
        return;
    };
    let e = event(7);
    for _ in 0..2 {
        let got = case
            .bus
            .publish(vec![case.outgoing(&e)])
            .await
            .expect("publish");
        assert_eq!(got, [PublishOutcome::Stored]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(case.stored().await, 2);
    case.cleanup().await;
}
