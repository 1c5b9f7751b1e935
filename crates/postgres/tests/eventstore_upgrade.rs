//! A schema created by the release that drew positions from a sequence under one schema-wide
//! lock keeps working after the upgrade: old events read first and in order, old streams
//! continue at their version, an old-release append in flight during the upgrade is waited
//! for (its positions land below every new one), and an old-release append after it fails
//! instead of writing a position readers may already have passed. A schema of version 2 (every
//! append updating the stream row) upgrades to version 3 and keeps every stream's version.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, EventStore, ExpectedVersion, NewEvent, ReadAll};
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

/// The schema as the release before schema version 3 created it (no `es_meta`; every append
/// updates the stream row), with `{s}` the schema and `{span}` the positions of a transaction.
const V2_DDL: &str = "
CREATE SCHEMA {s};
CREATE TABLE {s}.es_streams (stream text PRIMARY KEY, version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false);
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

/// That release's append function (its DDL ran this at every start).
const V2_APPEND: &str = "
CREATE OR REPLACE FUNCTION {s}.es_append(
    p_stream text, p_category text, p_seed bigint, p_kind smallint, p_expected bigint,
    p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[],
    OUT written boolean, OUT first_version bigint, OUT last_position bigint)
LANGUAGE plpgsql AS $append$
DECLARE
    current bigint;
    gone boolean;
    admitted boolean;
    base bigint;
    n bigint := cardinality(p_ids);
BEGIN
    written := false;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, p_seed));
    SELECT version, deleted INTO current, gone FROM {s}.es_streams WHERE stream = p_stream;
    IF gone OR EXISTS (SELECT 1 FROM {s}.es_events WHERE id = ANY(p_ids)) THEN
        RETURN;
    END IF;
    admitted := CASE p_kind
        WHEN 0 THEN true
        WHEN 1 THEN current IS NULL
        WHEN 2 THEN current IS NOT NULL
        ELSE CASE WHEN current IS NULL THEN p_expected = 0 ELSE current = p_expected END
    END;
    IF NOT admitted THEN
        RETURN;
    END IF;
    base := pg_current_xact_id()::text::bigint * {span};
    first_version := coalesce(current, 0) + 1;
    INSERT INTO {s}.es_events (position, id, stream, version, category, type, data, metadata)
    SELECT base + x.ord, x.i, p_stream, first_version + x.ord - 1, p_category, x.t, x.d, x.m
    FROM unnest(p_ids, p_types, p_data, p_meta) WITH ORDINALITY AS x(i, t, d, m, ord);
    INSERT INTO {s}.es_streams (stream, version) VALUES (p_stream, first_version + n - 1)
    ON CONFLICT (stream) DO UPDATE SET version = excluded.version;
    written := true;
    last_position := base + n;
END
$append$;
";

/// An append of one event as that release made it: one call of its function.
fn v2_append(s: &str, stream: &str) -> String {
    format!(
        "SELECT * FROM {s}.es_append('{stream}', split_part('{stream}', '-', 1), {seed}, \
         0::smallint, 0, ARRAY[gen_random_uuid()], ARRAY['Old'], ARRAY['{{}}'::jsonb], \
         ARRAY['{{}}'::jsonb])",
        seed = old_lock_key(&format!("streams.{s}"))
    )
}

fn v2(ddl: &str, s: &str) -> String {
    ddl.replace("{s}", s)
        .replace("{span}", &(1i64 << 20).to_string())
}

async fn schema_version(client: &deadpool_postgres::Client, s: &str) -> i64 {
    let sql = format!("SELECT value FROM {s}.es_meta WHERE key = 'schema_version'");
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_schema_upgrades_to_stream_rows_written_at_creation() {
    let Some(url) = backend(Backend::Postgres, "postgres event store upgrade") else {
        return;
    };
    let options = Options {
        schema: unique_name("es_v2"),
        ..Options::new(url)
    };
    let s = options.schema.clone();
    let pool = flotilla_postgres::connect(&options).unwrap();
    let admin = pool.get().await.unwrap();
    admin.batch_execute(&v2(V2_DDL, &s)).await.unwrap();
    admin.batch_execute(&v2(V2_APPEND, &s)).await.unwrap();
    // Written by the version 2 release: order-1 at version 3; order-2 at version 2 with all
    // its events truncated (the row alone holds its version); gone-1 deleted.
    for stream in [
        "order-1", "order-1", "order-1", "order-2", "order-2", "gone-1",
    ] {
        admin.batch_execute(&v2_append(&s, stream)).await.unwrap();
    }
    admin
        .batch_execute(&format!(
            "DELETE FROM {s}.es_events WHERE stream = 'order-2'; \
             UPDATE {s}.es_streams SET deleted = true WHERE stream = 'gone-1';"
        ))
        .await
        .unwrap();

    let store = PgEventStore::open(&options).await.unwrap();
    assert_eq!(schema_version(&admin, &s).await, 3);
    let sid = |n: &str| StreamId::new(n).unwrap();
    let one = || vec![NewEvent::new("New", json!(1))];

    let order1 = sid("order-1");
    assert_eq!(store.stream_version(&order1).await.unwrap(), Some(3));
    let r = store
        .append(&order1, ExpectedVersion::Exact(3), one())
        .await
        .unwrap();
    assert_eq!(
        r.first_version, 4,
        "the old stream continues at its version"
    );
    let stale = store
        .append(&order1, ExpectedVersion::Exact(3), one())
        .await;
    assert!(
        matches!(
            stale,
            Err(Error::WrongExpectedVersion {
                actual: Some(4),
                ..
            })
        ),
        "the version comes from the last event, not the row the append no longer writes: \
         {stale:?}"
    );

    let order2 = sid("order-2");
    assert_eq!(
        store.stream_version(&order2).await.unwrap(),
        Some(2),
        "a truncated stream keeps the version its row holds"
    );
    let fresh = store
        .append(&order2, ExpectedVersion::NoStream, one())
        .await;
    assert!(
        matches!(fresh, Err(Error::WrongExpectedVersion { .. })),
        "{fresh:?}"
    );
    let r = store
        .append(&order2, ExpectedVersion::Exact(2), one())
        .await
        .unwrap();
    assert_eq!(r.first_version, 3);

    let gone = store
        .append(&sid("gone-1"), ExpectedVersion::Any, one())
        .await;
    assert!(matches!(gone, Err(Error::StreamDeleted { .. })), "{gone:?}");

    // A new stream gets its row from its first append; later appends leave the row alone.
    let new = sid("order-3");
    for v in 0..3 {
        store
            .append(&new, ExpectedVersion::Exact(v), one())
            .await
            .unwrap();
    }
    let row: i64 = admin
        .query_one(
            &format!("SELECT version FROM {s}.es_streams WHERE stream = 'order-3'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        row, 1,
        "the row holds the version of the stream's first append"
    );

    // Truncating every event keeps the version.
    assert_eq!(store.truncate_stream(&new, u64::MAX).await.unwrap(), 3);
    assert_eq!(store.stream_version(&new).await.unwrap(), Some(3));
    let r = store
        .append(&new, ExpectedVersion::Exact(3), one())
        .await
        .unwrap();
    assert_eq!(r.first_version, 4);

    let listed: Vec<_> = store
        .list_streams(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.stream.as_str().to_owned(), i.version, i.deleted))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("gone-1".to_owned(), Some(1), true),
            ("order-1".to_owned(), Some(4), false),
            ("order-2".to_owned(), Some(3), false),
            ("order-3".to_owned(), Some(4), false),
        ]
    );

    // The previous release's DDL can no longer replace the function: it does not start.
    let old = admin.batch_execute(&v2(V2_APPEND, &s)).await;
    let old = old.expect_err("the version 2 function cannot replace the upgraded one");
    assert_eq!(
        old.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_FUNCTION_DEFINITION),
        "{old:?}"
    );

    // Opening again changes nothing; a schema from a newer release is refused.
    drop(store);
    let again = PgEventStore::open(&options).await.unwrap();
    assert_eq!(schema_version(&admin, &s).await, 3);
    assert_eq!(again.stream_version(&order1).await.unwrap(), Some(4));
    drop(again);
    admin
        .batch_execute(&format!(
            "UPDATE {s}.es_meta SET value = 4 WHERE key = 'schema_version'"
        ))
        .await
        .unwrap();
    let newer = PgEventStore::open(&options).await;
    let newer = newer.expect_err("a schema of a newer release is refused");
    assert!(newer.to_string().contains("newer"), "{newer}");
    admin
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
}
