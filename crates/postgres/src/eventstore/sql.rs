//! Statements, with `{s}` standing for the schema, and row mapping.

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, Metadata, RecordedEvent};
use tokio_postgres::Row;

use super::schema::TX_SPAN;

/// Columns every event query selects, in the order [`event`] reads them.
const COLUMNS: &str = "position, id, stream, version, type, data, metadata, recorded_at";
/// How many columns [`COLUMNS`] names.
const COLUMN_COUNT: usize = 8;

/// The read bound of the statement's snapshot: `xmin << TX_BITS`. Every transaction that can
/// still commit has an id of at least `xmin`, so every position it holds is at or above it.
const BOUND: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {span}";

/// A page of `$all` below the bound, with the bound and the highest visible position (`top`)
/// of the same snapshot as the last two columns. `{filter}` narrows both; `$1` is the
/// position to read after, `$2` the limit. An empty page is one row of NULL event columns.
const READ_ALL: &str = "SELECT e.*, b.bound, b.top FROM \
     (SELECT {bound} AS bound, \
      (SELECT coalesce(max(position), 0) FROM {s}.es_events WHERE {filter}) AS top) b \
     LEFT JOIN LATERAL (SELECT {cols} FROM {s}.es_events WHERE {filter} AND position > $1 \
      AND position < b.bound ORDER BY position LIMIT $2) e ON true \
     ORDER BY e.position";

/// The statements of one schema, formatted once.
#[derive(Debug)]
pub(super) struct Sql {
    pub stream_lock: String,
    pub tx_slot: String,
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
        let f = |q: &str| {
            q.replace("{bound}", BOUND)
                .replace("{span}", &TX_SPAN.to_string())
                .replace("{s}", schema)
                .replace("{cols}", COLUMNS)
        };
        let read = |filter: &str| f(&READ_ALL.replace("{filter}", filter));
        Self {
            // One lock per stream (a 64-bit hash of its name, seeded per schema): appends to
            // one stream take turns, appends to different streams do not wait for each other.
            stream_lock: f("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))"),
            // This transaction's id (assigned here if it had none) as the base of its
            // positions, and how many of them earlier appends in the same transaction used.
            tx_slot: f("SELECT b.base, coalesce(max(e.position) - b.base, 0) \
                 FROM (SELECT pg_current_xact_id()::text::bigint * {span} AS base) b \
                 LEFT JOIN {s}.es_events e \
                 ON e.position > b.base AND e.position < b.base + {span} GROUP BY b.base"),
            by_ids: f("SELECT {cols} FROM {s}.es_events WHERE id = ANY($1)"),
            stream_state: f("SELECT version, deleted FROM {s}.es_streams WHERE stream = $1"),
            insert: f("INSERT INTO {s}.es_events \
                 (position, id, stream, version, category, type, data, metadata) \
                 SELECT $7 + x.ord - 1, x.i, $2, $8 + x.ord - 1, $3, x.t, x.d, x.m \
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
            read_all: read("true"),
            read_category: read("category = $3"),
            read_type: read("type = $3"),
            head: f("SELECT coalesce(max(position), 0) FROM {s}.es_events \
                 WHERE position < {bound}"),
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
                // Another stream's append stored the same event id first: a retry re-plans
                // and answers as the contract says (already stored, or a reused id).
                || c == &SqlState::UNIQUE_VIOLATION
        }
    };
    Error::Storage {
        message: e.to_string(),
        retryable,
    }
}

/// Reads one row of a [`READ_ALL`] statement: the event, if any, then the bound and the top.
pub(super) fn bounded(r: &Row) -> Result<(Option<RecordedEvent>, i64, i64), Error> {
    let bound = r.try_get(COLUMN_COUNT).map_err(pg)?;
    let top = r.try_get(COLUMN_COUNT + 1).map_err(pg)?;
    let empty = r.try_get::<_, Option<i64>>(0).map_err(pg)?.is_none();
    Ok((if empty { None } else { Some(event(r)?) }, bound, top))
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
