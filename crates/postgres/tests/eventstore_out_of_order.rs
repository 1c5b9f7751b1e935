//! Out-of-order commits never make a subscriber skip an event.
//!
//! Transaction A draws its position first and stays open; B appends after it. With a plain
//! sequence B would commit first, a reader would pass B's position and never see A's. Here
//! B cannot become visible before A, the subscriber receives A then B, and a rolled-back
//! append leaves a gap that does not stall anyone.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::StreamId;
use flotilla_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent, ReadAll, subscribe_all};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;

async fn open() -> Option<(Arc<PgEventStore>, String)> {
    let url = backend(Backend::Postgres, "postgres out-of-order commits")?;
    let options = Options {
        schema: unique_name("es_ooo"),
        ..Options::new(url)
    };
    let store = PgEventStore::open(&options).await.unwrap();
    Some((Arc::new(store), options.schema))
}

async fn drop_schema(store: &PgEventStore, schema: &str) {
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Waits until a session is blocked on this store's append lock (the second appender). If
/// the store let B through without waiting, this fails instead of hanging.
async fn until_an_append_waits(store: &PgEventStore) {
    let client = store.pool().get().await.unwrap();
    let key = store.append_lock_key();
    let waiting = async {
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                     AND classid = (($1::bigint >> 32) & 4294967295)::oid \
                     AND objid = ($1::bigint & 4294967295)::oid",
                    &[&key],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the second append never waited for the first: commits could reorder");
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

    let b_store = store.clone();
    let b = tokio::spawn(async move {
        let e = vec![NewEvent::new("B", json!("second"))];
        b_store
            .append(&sid("b-1"), ExpectedVersion::Any, e)
            .await
            .unwrap()
    });
    until_an_append_waits(&store).await;
    let visible = store.read_all(ReadAll::after(0, 10)).await.unwrap();
    assert!(
        visible.is_empty(),
        "nothing is readable while A is uncommitted: {visible:?}"
    );
    assert!(!b.is_finished(), "B cannot commit ahead of A");

    tx.commit().await.unwrap();
    store.announce(a.last_position);
    let b = b.await.unwrap();
    assert!(b.last_position > a.last_position);
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
    let b_store = store.clone();
    let b = tokio::spawn(async move {
        let e = vec![NewEvent::new("B", json!(null))];
        b_store
            .append(&sid("b-1"), ExpectedVersion::Any, e)
            .await
            .unwrap()
    });
    until_an_append_waits(&store).await;
    tx.rollback().await.unwrap();
    let b = b.await.unwrap();
    assert!(
        b.last_position > d.last_position,
        "the rolled-back position is not reused"
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
