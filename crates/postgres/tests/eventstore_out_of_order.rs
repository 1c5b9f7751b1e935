//! Out-of-order commits never make a reader skip an event.
//!
//! Transaction A appends first and stays open; B appends to another stream after it and
//! commits at once (appends to different streams do not wait for each other). B's position is
//! above A's, and `$all` returns nothing past A until A finishes, so the subscriber receives A
//! then B; a rolled-back A leaves a gap nobody waits on. The many-writers test below mixes
//! long and short transactions with a reader running throughout.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

#[path = "eventstore_out_of_order/many_writers.rs"]
mod many_writers;

use std::sync::Arc;

use flotilla_core::StreamId;
use flotilla_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent, ReadAll, subscribe_all};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;

async fn open() -> Option<(Arc<PgEventStore>, String)> {
    let url = backend(Backend::Postgres, "postgres out-of-order commits")?;
    let schema = unique_name("es_ooo");
    let store = open_at(&url, &schema).await;
    Some((store, schema))
}

/// A store on `schema`, with its own pool and head poller (as another process would have).
async fn open_at(url: &str, schema: &str) -> Arc<PgEventStore> {
    let options = Options {
        schema: schema.to_owned(),
        pool_size: 24,
        ..Options::new(url)
    };
    Arc::new(PgEventStore::open(&options).await.unwrap())
}

async fn drop_schema(store: &PgEventStore, schema: &str) {
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_delivered_before_later_positions() {
    let Some((store, schema)) = open().await else {
        return;
    };
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut sub = subscribe_all(dyn_store, 0, Filter::All);

    let mut client = store.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let first = [NewEvent::new("A", json!("first"))];
    let a = store
        .append_in(&tx, &sid("a-1"), ExpectedVersion::Any, &first)
        .await
        .unwrap();

    let b = store
        .append(
            &sid("b-1"),
            ExpectedVersion::Any,
            vec![NewEvent::new("B", json!("second"))],
        )
        .await
        .expect("B commits while A is open: different streams do not wait for each other");
    assert!(
        b.last_position > a.last_position,
        "B's position is above A's"
    );
    let visible = store.read_all(ReadAll::after(0, 10)).await.unwrap();
    assert!(
        visible.is_empty(),
        "B is committed but must not be readable while A, below it, may still commit: \
         {visible:?}"
    );
    assert!(
        *store.head().borrow() < a.last_position,
        "the head stays below A"
    );

    tx.commit().await.unwrap();
    store.announce();
    let got_a = sub.next().await.unwrap().unwrap();
    let got_b = sub.next().await.unwrap().unwrap();
    assert_eq!(
        (got_a.event_type.as_str(), got_a.position),
        ("A", a.last_position)
    );
    assert_eq!(
        (got_b.event_type.as_str(), got_b.position),
        ("B", b.last_position)
    );
    drop(sub);
    drop(client);
    drop_schema(&store, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_a_gap_nobody_waits_on() {
    let Some((store, schema)) = open().await else {
        return;
    };
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut sub = subscribe_all(dyn_store, 0, Filter::All);

    let mut client = store.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let doomed = [NewEvent::new("Doomed", json!(null))];
    let d = store
        .append_in(&tx, &sid("d-1"), ExpectedVersion::Any, &doomed)
        .await
        .unwrap();
    let b = store
        .append(
            &sid("b-1"),
            ExpectedVersion::Any,
            vec![NewEvent::new("B", json!(null))],
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        b.last_position > d.last_position,
        "the rolled-back position is below B's and is never reused"
    );
    let next = sub.next().await.unwrap().unwrap();
    assert_eq!(
        next.event_type, "B",
        "the gap is passed, the doomed event never appears"
    );
    drop(sub);
    drop(client);
    drop_schema(&store, &schema).await;
}
