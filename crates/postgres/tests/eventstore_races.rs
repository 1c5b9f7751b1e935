//! Appends arbitrate on the stream's row, not on a lock: a delete racing appends to the same
//! stream lands between two of them, never under one. Every append that succeeded is below
//! the deleted stream's final version, every one after the delete fails as deleted, and the
//! stream's events are exactly versions 1..=final.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, EventStore, ExpectedVersion, NewEvent, ReadAll};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;

const WRITERS: usize = 6;
const APPENDS: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_appends_lands_between_them() {
    let Some(url) = backend(Backend::Postgres, "postgres event store races") else {
        return;
    };
    let options = Options {
        schema: unique_name("es_race"),
        ..Options::new(url)
    };
    let store = Arc::new(PgEventStore::open(&options).await.unwrap());
    let stream = StreamId::new("race-1").unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, stream) = (store.clone(), stream.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0..APPENDS {
                    let e = vec![NewEvent::new("E", json!(i))];
                    match store.append(&stream, ExpectedVersion::Any, e).await {
                        Ok(r) => ok.push(r.last_version),
                        Err(Error::StreamDeleted { .. }) => return ok,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
                ok
            })
        })
        .collect();
    // Delete once some appends landed, while the others are still running.
    while store.stream_version(&stream).await.unwrap().unwrap_or(0) < 10 {
        tokio::task::yield_now().await;
    }
    store
        .delete_stream(&stream, ExpectedVersion::Any)
        .await
        .unwrap();
    let mut succeeded = Vec::new();
    for w in writers {
        succeeded.extend(w.await.unwrap());
    }

    let info = store.list_streams(None, 10).await.unwrap();
    let last = info[0].version.unwrap();
    assert!(info[0].deleted);
    assert!(
        succeeded.iter().all(|v| *v <= last),
        "no append landed after the delete"
    );
    let versions: Vec<u64> = store
        .read_all(ReadAll::after(0, 1000))
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(
        versions,
        (1..=last).collect::<Vec<_>>(),
        "versions 1..=final, no gap"
    );
    assert_eq!(
        succeeded.len() as u64,
        last,
        "each stored version is one successful append"
    );
    let client = store.pool().get().await.unwrap();
    let drop = format!("DROP SCHEMA {} CASCADE", options.schema);
    client.batch_execute(&drop).await.unwrap();
}

/// A transaction that took its id before another appended to the same stream cannot append
/// there: its positions would sort before that append in `$all` while its versions follow it.
/// It gets a retryable error; the retried transaction lands in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_transaction_never_appends_below_the_streams_last_event() {
    let Some(url) = backend(Backend::Postgres, "postgres event store races") else {
        return;
    };
    let options = Options {
        schema: unique_name("es_race"),
        ..Options::new(url)
    };
    let store = PgEventStore::open(&options).await.unwrap();
    let stream = StreamId::new("order-1").unwrap();
    let mut client = store.pool().get().await.unwrap();
    let old = client.transaction().await.unwrap();
    // The caller's own write comes first and takes the transaction's id.
    old.batch_execute("SELECT pg_current_xact_id()")
        .await
        .unwrap();
    let younger = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("E", json!(1))],
        )
        .await
        .unwrap();
    let refused = store
        .append_in(
            &old,
            &stream,
            ExpectedVersion::Any,
            &[NewEvent::new("E", json!(2))],
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Storage {
                retryable: true,
                ..
            })
        ),
        "{refused:?}"
    );
    old.rollback().await.unwrap();
    let retried = client.transaction().await.unwrap();
    let r = store
        .append_in(
            &retried,
            &stream,
            ExpectedVersion::Any,
            &[NewEvent::new("E", json!(2))],
        )
        .await
        .unwrap();
    retried.commit().await.unwrap();
    assert!(r.last_position > younger.last_position);
    assert_eq!(r.first_version, 2);
    drop(client);
    let c = store.pool().get().await.unwrap();
    c.batch_execute(&format!("DROP SCHEMA {} CASCADE", options.schema))
        .await
        .unwrap();
}
