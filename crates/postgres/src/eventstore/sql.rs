//! Statements, with `{s}` standing for the schema, and row mapping.

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, Metadata, RecordedEvent};
use tokio_postgres::Row;

/// Columns every event query selects, in the order [`event`] reads them.
const COLUMNS: &str = "position, id, stream, version, type, data, metadata, recorded_at";

/// The statements of one schema, formatted once.
#[derive(Debug)]
pub(super) struct Sql {
    pub lock: String,
    pub by_ids: String,
    pub stream_state: String,
    pub insert: String,
    pub upsert_stream: String,
    pub read_forward: String,
    pub read_backward: String,
    pub read_all: String,
    pub read_category: String,
    pub read_type: String,
    pub head: String,
    pub delete: String,
    pub drop_snapshot: String,
    pub truncate: String,
    pub save_snapshot: String,
    pub load_snapshot: String,
    pub list_streams: String,
    pub list_checkpoints: String,
    pub load_checkpoint: String,
    pub save_checkpoint: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        let f = |q: &str| q.replace("{s}", schema).replace("{cols}", COLUMNS);
        Self {
            lock: f("SELECT pg_advisory_xact_lock($1)"),
            by_ids: f("SELECT {cols} FROM {s}.es_events WHERE id = ANY($1)"),
            stream_state: f("SELECT version, deleted FROM {s}.es_streams WHERE stream = $1"),
            // Under the append lock nobody else draws from the sequence: reserve n positions
            // and insert in one statement (a volatile CTE is evaluated once).
            insert: f("WITH r AS (SELECT setval('{s}.es_position', \
                 nextval('{s}.es_position') + $7 - 1) AS last) \
                 INSERT INTO {s}.es_events \
                 (position, id, stream, version, category, type, data, metadata) \
                 SELECT (SELECT last FROM r) - $7 + x.ord, x.i, $2, $8 + x.ord - 1, $3, x.t, \
                 x.d, x.m \
                 FROM unnest($1::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) \
                 WITH ORDINALITY AS x(i, t, d, m, ord) RETURNING position"),
            upsert_stream: f(
                "INSERT INTO {s}.es_streams (stream, version) VALUES ($1, $2) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            ),
            read_forward: f(
                "SELECT {cols} FROM {s}.es_events WHERE stream = $1 AND version >= $2 \
                 ORDER BY version LIMIT $3",
            ),
            read_backward: f("SELECT {cols} FROM {s}.es_events WHERE stream = $1 \
                 AND version <= $2 ORDER BY version DESC LIMIT $3"),
            read_all: f("SELECT {cols} FROM {s}.es_events WHERE position > $1 \
                 ORDER BY position LIMIT $2"),
            read_category: f("SELECT {cols} FROM {s}.es_events WHERE category = $3 \
                 AND position > $1 ORDER BY position LIMIT $2"),
            read_type: f(
                "SELECT {cols} FROM {s}.es_events WHERE type = $3 AND position > $1 \
                 ORDER BY position LIMIT $2",
            ),
            head: f("SELECT coalesce(max(position), 0) FROM {s}.es_events"),
            delete: f(
                "INSERT INTO {s}.es_streams (stream, version, deleted) VALUES ($1, 0, true) \
                 ON CONFLICT (stream) DO UPDATE SET deleted = true",
            ),
            drop_snapshot: f("DELETE FROM {s}.es_snapshots WHERE stream = $1"),
            truncate: f("DELETE FROM {s}.es_events WHERE stream = $1 AND version < $2"),
            save_snapshot: f("INSERT INTO {s}.es_snapshots (stream, version, state) \
                 VALUES ($1, $2, $3) ON CONFLICT (stream) DO UPDATE \
                 SET version = excluded.version, state = excluded.state"),
            load_snapshot: f("SELECT version, state FROM {s}.es_snapshots WHERE stream = $1"),
            list_streams: f("SELECT stream, version, deleted FROM {s}.es_streams \
                 WHERE stream COLLATE \"C\" > $1 ORDER BY stream COLLATE \"C\" LIMIT $2"),
            list_checkpoints: f("SELECT subscriber, position FROM {s}.es_checkpoints \
                 ORDER BY subscriber COLLATE \"C\""),
            load_checkpoint: f("SELECT position FROM {s}.es_checkpoints WHERE subscriber = $1"),
            save_checkpoint: f("INSERT INTO {s}.es_checkpoints (subscriber, position) \
                 VALUES ($1, $2) ON CONFLICT (subscriber) DO UPDATE \
                 SET position = excluded.position"),
        }
    }
}

/// Maps a driver error onto the contract. Everything but a refused statement may pass on
/// retry (a lost connection, a serialization failure, a restart).
pub(super) fn pg(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    let retryable = match e.code() {
        None => true,
        Some(c) => {
            c == &SqlState::T_R_SERIALIZATION_FAILURE
                || c == &SqlState::T_R_DEADLOCK_DETECTED
                || c == &SqlState::ADMIN_SHUTDOWN
                || c == &SqlState::CANNOT_CONNECT_NOW
        }
    };
    Error::Storage {
        message: e.to_string(),
        retryable,
    }
}

/// Reads one event row.
pub(super) fn event(r: &Row) -> Result<RecordedEvent, Error> {
    let stream: String = r.try_get(2).map_err(pg)?;
    let metadata: serde_json::Value = r.try_get(6).map_err(pg)?;
    Ok(RecordedEvent {
        position: r.try_get::<_, i64>(0).map_err(pg)? as u64,
        id: r.try_get(1).map_err(pg)?,
        stream: StreamId::new(stream).map_err(Error::storage)?,
        version: r.try_get::<_, i64>(3).map_err(pg)? as u64,
        event_type: r.try_get(4).map_err(pg)?,
        data: r.try_get(5).map_err(pg)?,
        metadata: serde_json::from_value::<Metadata>(metadata).map_err(Error::storage)?,
        recorded_at: r.try_get(7).map_err(pg)?,
    })
}

/// PostgreSQL integers are signed: clamp "everything" (`u64::MAX`) to the largest bigint.
pub(super) fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
