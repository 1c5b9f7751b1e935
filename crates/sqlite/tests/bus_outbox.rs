//! Transactional outbox and inbox: the event exists exactly when the business change does,
//! the relay delivers it, and the inbox applies a redelivered event's effect once.
#![cfg(feature = "bus")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::{Backend, GroupName, GroupSpec, MemoryBackend, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_sqlite::bus::outbox::{self, Relay};
use flotilla_sqlite::{Database, Error, Options};

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(Options::new(dir.path().join("app.db"))).unwrap();
    outbox::install(&db).unwrap();
    db.writer()
        .write_blocking(|c| {
            Ok::<_, Error>(c.execute_batch("CREATE TABLE orders (id TEXT PRIMARY KEY)")?)
        })
        .unwrap();
    (dir, db)
}

fn order_created(id: &str) -> Outgoing {
    let mut e = CloudEvent::new("/orders", "orders.created");
    e.id = format!("order-{id}");
    Outgoing::new(TopicName::new("orders.created").unwrap(), e)
}

#[tokio::test]
async fn outbox_events_exist_only_with_their_business_change_and_are_relayed() {
    let (_dir, db) = open();
    let ok = order_created("1");
    db.writer()
        .write(move |c| {
            c.execute("INSERT INTO orders (id) VALUES ('1')", [])?;
            outbox::enqueue(c, &ok)
        })
        .await
        .unwrap();
    // The same order again fails on the primary key: its event must not survive.
    let dup = order_created("1-again");
    let failed: Result<(), Error> = db
        .writer()
        .write(move |c| {
            outbox::enqueue(c, &dup)?;
            c.execute("INSERT INTO orders (id) VALUES ('1')", [])?;
            Ok(())
        })
        .await;
    assert!(failed.is_err());
    let bus = MemoryBackend::new();
    let group = GroupName::new("billing").unwrap();
    let spec = GroupSpec {
        name: group.clone(),
        pattern: TopicPattern::new("orders.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    let relay = Relay::new(db.clone(), Arc::new(bus.clone())).unwrap();
    assert_eq!(
        relay.relay_once().await.unwrap(),
        1,
        "only the committed change's event"
    );
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "relayed events leave the outbox"
    );
    let got = bus
        .receive(&group, 10, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap();
    let ids: Vec<_> = got.iter().map(|d| d.event.id.as_str()).collect();
    assert_eq!(ids, ["order-1"]);
}

#[tokio::test]
async fn inbox_applies_a_redelivered_events_effect_once() {
    let (_dir, db) = open();
    let event = order_created("7").event;
    let mut applied = 0;
    for _ in 0..2 {
        let e = event.clone();
        let first = db
            .writer()
            .write(move |c| {
                let first = outbox::first_delivery(c, "billing", &e)?;
                if first {
                    c.execute("INSERT INTO orders (id) VALUES ('7')", [])?;
                }
                Ok::<_, Error>(first)
            })
            .await
            .unwrap();
        applied += usize::from(first);
    }
    assert_eq!(applied, 1);
}
