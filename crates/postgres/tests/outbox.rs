//! The PostgreSQL outbox and inbox against the real server, each test in its own schema
//! (unique per run, dropped afterwards).
#![cfg(feature = "outbox")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo, GroupName,
    GroupSpec, MemoryBackend, Outgoing, PublishOutcome, Receipt, TopicInfo,
};
use flotilla_core::event::Data;
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_postgres::Options;
use flotilla_postgres::outbox::Outbox;
use flotilla_testkit::{Backend as Server, backend, unique_name};

struct Db {
    outbox: Outbox,
    schema: String,
}

impl Db {
    async fn open() -> Option<Self> {
        let url = backend(Server::Postgres, "postgres outbox")?;
        let schema = unique_name("outbox");
        let options = Options {
            schema: schema.clone(),
            pool_size: 4,
            ..Options::new(url)
        };
        let outbox = Outbox::open(&options).await.expect("the outbox opens");
        Some(Self { outbox, schema })
    }

    /// Business write + enqueue in one transaction, committed or rolled back.
    async fn order(&self, n: u32, commit: bool) {
        let mut client = self.outbox.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        self.outbox.enqueue(&tx, &order(n)).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }

    async fn outbox_len(&self) -> i64 {
        let client = self.outbox.pool().get().await.unwrap();
        let sql = format!("SELECT count(*) FROM {}.bus_outbox", self.schema);
        client.query_one(&sql, &[]).await.unwrap().get(0)
    }

    async fn drop(self) {
        let client = self.outbox.pool().get().await.unwrap();
        let sql = format!("DROP SCHEMA {} CASCADE", self.schema);
        client.batch_execute(&sql).await.unwrap();
    }
}

fn order(n: u32) -> Outgoing {
    let event =
        CloudEvent::new("/orders", "orders.created").with_json(serde_json::json!({ "n": n }));
    Outgoing::new(TopicName::new("orders.created").unwrap(), event)
}

/// A bus whose group `g` receives every `orders.*` event, with publisher dedupe on.
async fn bus() -> (Arc<MemoryBackend>, GroupName) {
    bus_with(MemoryBackend::new()).await
}

async fn bus_with(bus: MemoryBackend) -> (Arc<MemoryBackend>, GroupName) {
    let bus = Arc::new(bus);
    let g = GroupName::new("g").unwrap();
    let spec = GroupSpec {
        name: g.clone(),
        pattern: TopicPattern::new("orders.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    (bus, g)
}

/// The `n` of every event the group holds, in delivery order.
async fn received(bus: &MemoryBackend, g: &GroupName) -> Vec<u64> {
    let lease = Duration::from_secs(60);
    let got = bus.receive(g, 100, lease, Duration::ZERO).await.unwrap();
    got.iter()
        .map(|d| match &d.event.data {
            Some(Data::Json(v)) => v["n"].as_u64().unwrap(),
            other => panic!("unexpected data {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn committed_events_are_relayed_in_order_and_rolled_back_ones_never() {
    let Some(db) = Db::open().await else { return };
    let (bus, g) = bus().await;
    db.order(1, true).await;
    db.order(2, false).await;
    db.order(3, true).await;
    let relay = db.outbox.relay(bus.clone()).batch(1);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    assert_eq!(received(&bus, &g).await, [1, 3]);
    assert_eq!(db.outbox_len().await, 0, "what was published is deleted");
    db.drop().await;
}

/// Publishes to the memory bus, then fails the first time, as a relay that crashes after the
/// bus stored the batch and before the outbox rows are deleted.
#[derive(Debug)]
struct CrashAfterPublish {
    bus: Arc<MemoryBackend>,
    crashed: AtomicBool,
}

#[tokio::test]
async fn a_crash_between_publish_and_delete_republishes_and_the_bus_drops_the_repeat() {
    let Some(db) = Db::open().await else { return };
    let (bus, g) = bus().await;
    for n in 1..=3 {
        db.order(n, true).await;
    }
    let target = Arc::new(CrashAfterPublish {
        bus: bus.clone(),
        crashed: AtomicBool::new(false),
    });
    let relay = db.outbox.relay(target);
    assert!(relay.relay_once().await.is_err(), "the crash is reported");
    assert_eq!(db.outbox_len().await, 3, "nothing deleted: the rows stay");
    assert_eq!(relay.relay_once().await.unwrap(), 3, "published again");
    assert_eq!(db.outbox_len().await, 0);
    assert_eq!(received(&bus, &g).await, [1, 2, 3], "each event once");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_relay_publishes_at_a_time() {
    let Some(db) = Db::open().await else { return };
    // No dedupe: two relays publishing the same rows would show as duplicates.
    let (bus, g) = bus_with(MemoryBackend::with_dedupe_window(Duration::ZERO)).await;
    for n in 1..=50 {
        db.order(n, true).await;
    }
    let relays: Vec<_> = (0..4)
        .map(|_| db.outbox.relay(bus.clone()).batch(5))
        .collect();
    let mut rounds = 0;
    while db.outbox_len().await > 0 {
        let rounds_of_each: Vec<_> = relays
            .iter()
            .cloned()
            .map(|r| tokio::spawn(async move { r.relay_once().await }))
            .collect();
        for round in rounds_of_each {
            round.await.unwrap().unwrap();
        }
        rounds += 1;
        assert!(rounds < 100, "the relays make progress");
    }
    let got = received(&bus, &g).await;
    assert_eq!(
        got,
        (1..=50).collect::<Vec<_>>(),
        "in outbox order, once each"
    );
    db.drop().await;
}

#[tokio::test]
async fn first_delivery_is_true_once_per_consumer_and_rolls_back_with_the_handler() {
    let Some(db) = Db::open().await else { return };
    let event = order(7).event;
    let first = |consumer: &'static str, commit: bool| {
        let (outbox, event) = (db.outbox.clone(), event.clone());
        async move {
            let mut client = outbox.pool().get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let fresh = outbox.first_delivery(&tx, consumer, &event).await.unwrap();
            if commit {
                tx.commit().await.unwrap();
            }
            fresh
        }
    };
    assert!(
        first("billing", false).await,
        "first time, then rolled back"
    );
    assert!(first("billing", true).await, "the rollback forgot it");
    assert!(!first("billing", true).await, "a redelivery");
    assert!(
        first("shipping", true).await,
        "another consumer has its own inbox"
    );
    assert_eq!(db.outbox.prune_inbox(Duration::ZERO).await.unwrap(), 2);
    assert!(first("billing", true).await, "pruned entries are forgotten");
    db.drop().await;
}

#[async_trait]
impl Backend for CrashAfterPublish {
    fn name(&self) -> &'static str {
        "crash-after-publish"
    }
    fn capabilities(&self) -> Capabilities {
        self.bus.capabilities()
    }
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error> {
        let out = self.bus.publish(batch).await?;
        if !self.crashed.swap(true, Ordering::SeqCst) {
            return Err(Error::Unavailable("connection lost after publish".into()));
        }
        Ok(out)
    }
    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error> {
        self.bus.declare_group(spec).await
    }
    async fn delete_group(&self, group: &GroupName) -> Result<(), Error> {
        self.bus.delete_group(group).await
    }
    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        self.bus.receive(group, max, lease, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        self.bus.ack(receipt).await
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        self.bus.nack(receipt, delay).await
    }
    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error> {
        self.bus.dead_letter(receipt, failure).await
    }
    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error> {
        self.bus.dlq_list(query).await
    }
    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error> {
        self.bus.dlq_get(id).await
    }
    async fn dlq_replay(&self, id: &str) -> Result<(), Error> {
        self.bus.dlq_replay(id).await
    }
    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error> {
        self.bus.dlq_purge(group, ids).await
    }
    async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        self.bus.topics().await
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, Error> {
        self.bus.groups().await
    }
}
