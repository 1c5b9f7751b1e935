//! `SqliteBus::pending_deliveries`: what each group still owes, read without leasing it, for
//! `flotilla migrate`.
#![cfg(feature = "bus")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Options};

fn event(topic: &str, id: &str) -> Outgoing {
    let mut e = CloudEvent::new("/test", "t");
    e.id = id.into();
    Outgoing::new(TopicName::new(topic).unwrap(), e)
}

async fn declare(bus: &SqliteBus, name: &str, pattern: &str) {
    let spec = GroupSpec {
        name: GroupName::new(name).unwrap(),
        pattern: TopicPattern::new(pattern).unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
}

fn owed(pending: &[flotilla_sqlite::bus::PendingDelivery]) -> Vec<(String, String, u32)> {
    pending
        .iter()
        .map(|p| (p.group.to_string(), p.event.id.clone(), p.attempts))
        .collect()
}

#[tokio::test]
async fn each_group_owes_what_it_has_not_acked_and_reading_it_leases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(Options::new(dir.path().join("bus.db"))).unwrap();
    let bus = SqliteBus::open(db, BusOptions::default()).unwrap();
    declare(&bus, "all", "t.>").await;
    declare(&bus, "x-only", "t.x").await;
    let batch = vec![event("t.x", "1"), event("t.y", "2"), event("t.x", "3")];
    bus.publish(batch).await.unwrap();
    let wait = Duration::ZERO;
    let got = bus
        .receive(
            &GroupName::new("all").unwrap(),
            2,
            Duration::from_secs(60),
            wait,
        )
        .await
        .unwrap();
    bus.ack(&got[0].receipt).await.unwrap();

    let pending = bus.pending_deliveries().await.unwrap();
    let expected = [
        ("all", "2", 1),
        ("all", "3", 0),
        ("x-only", "1", 0),
        ("x-only", "3", 0),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(g, id, n)| (g.to_string(), id.to_string(), *n))
        .collect();
    let mut by_group = owed(&pending);
    by_group.sort();
    assert_eq!(by_group, expected, "in flight counts as owed");
    let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
    assert!(seqs.is_sorted(), "publish order: {seqs:?}");
    let again = bus.pending_deliveries().await.unwrap();
    assert_eq!(owed(&again), owed(&pending), "reading took no lease");
}
