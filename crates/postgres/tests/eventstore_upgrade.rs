//! A schema created by the release that drew positions from a sequence under one schema-wide
//! lock keeps working after the upgrade: old events read first and in order, old streams
//! continue at their version, an old-release append in flight during the upgrade is waited
//! for (its positions land below every new one), and an old-release append after it fails
//! instead of writing a position readers may already have passed.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use flotilla_core::StreamId;
use flotilla_eventstore::{EventStore, ExpectedVersion, NewEvent, ReadAll};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;

/// The tables as the previous release created them (`{s}`: the schema).
const OLD_DDL: &str = "
CREATE SCHEMA {s};
CREATE TABLE {s}.es_streams (stream text PRIMARY KEY, version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false);
CREATE SEQUENCE {s}.es_position;
CREATE TABLE {s}.es_events (position bigint PRIMARY KEY, id uuid NOT NULL UNIQUE,
    stream text NOT NULL, version bigint NOT NULL, category text NOT NULL, type text NOT NULL,
    data jsonb NOT NULL, metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream, version));
CREATE INDEX es_events_category ON {s}.es_events (category, position);
CREATE INDEX es_events_type ON {s}.es_events (type, position);
CREATE TABLE {s}.es_snapshots (stream text PRIMARY KEY, version bigint NOT NULL,
    state jsonb NOT NULL);
CREATE TABLE {s}.es_checkpoints (subscriber text PRIMARY KEY, position bigint NOT NULL);
";

/// The previous release's lock key for `schema` (FNV-1a of its name).
fn old_lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flotilla.eventstore.".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// An append as the previous release made it: under the schema lock, position from the
/// sequence.
fn old_append(s: &str, stream: &str, version: i64) -> String {
    format!(
        "SELECT pg_advisory_xact_lock({key}); \
         INSERT INTO {s}.es_events (position, id, stream, version, category, type, data, metadata) \
         VALUES (nextval('{s}.es_position'), gen_random_uuid(), '{stream}', {version}, \
         split_part('{stream}', '-', 1), 'Old', '{{}}', '{{}}'); \
         INSERT INTO {s}.es_streams (stream, version) VALUES ('{stream}', {version}) \
         ON CONFLICT (stream) DO UPDATE SET version = excluded.version;",
        key = old_lock_key(s)
    )
}

/// Waits until some session waits for the previous release's lock (the upgrade).
async fn until_the_upgrade_waits(client: &deadpool_postgres::Client, schema: &str) {
    let key = old_lock_key(schema);
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
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the upgrade never waited for the old append in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_the_previous_release_upgrades_in_place() {
    let Some(url) = backend(Backend::Postgres, "postgres event store upgrade") else {
        return;
    };
    let options = Options {
        schema: unique_name("es_up"),
        ..Options::new(url)
    };
    let s = options.schema.clone();
    let pool = flotilla_postgres::connect(&options).unwrap();
    let admin = pool.get().await.unwrap();
    admin
        .batch_execute(&OLD_DDL.replace("{s}", &s))
        .await
        .unwrap();
    for v in 1..=3 {
        admin
            .batch_execute(&old_append(&s, "order-1", v))
            .await
            .unwrap();
    }

    // An old-release append still in flight when the new release opens the schema.
    let mut old = pool.get().await.unwrap();
    let in_flight = old.transaction().await.unwrap();
    in_flight
        .batch_execute(&old_append(&s, "order-2", 1))
        .await
        .unwrap();
    let opening = tokio::spawn({
        let options = options.clone();
        async move { PgEventStore::open(&options).await.unwrap() }
    });
    until_the_upgrade_waits(&admin, &s).await;
    assert!(
        !opening.is_finished(),
        "the upgrade waits for the old append"
    );
    in_flight.commit().await.unwrap();
    let store = opening.await.unwrap();

    let order1 = StreamId::new("order-1").unwrap();
    assert_eq!(store.stream_version(&order1).await.unwrap(), Some(3));
    let r = store
        .append(
            &order1,
            ExpectedVersion::Exact(3),
            vec![NewEvent::new("New", json!(1))],
        )
        .await
        .unwrap();
    assert_eq!(
        r.first_version, 4,
        "the old stream continues at its version"
    );
    let all = store.read_all(ReadAll::after(0, 100)).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|e| (e.position, e.event_type.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "Old"),
            (2, "Old"),
            (3, "Old"),
            (4, "Old"),
            (r.last_position, "New")
        ],
        "old events first, in their order, then the new one above them"
    );

    let late = admin.batch_execute(&old_append(&s, "order-3", 1)).await;
    let late = late.expect_err("an old-release append after the upgrade fails");
    assert_eq!(
        late.code(),
        Some(&tokio_postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
        "{late:?}"
    );
    drop(store);
    let again = PgEventStore::open(&options).await.unwrap();
    assert_eq!(
        again.read_all(ReadAll::after(0, 100)).await.unwrap().len(),
        5
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
}
