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

/// A page of `$all` below the bound, in position order, then one trailer row of NULL event
/// columns carrying the bound and the highest visible position matching the filter (`top`),
/// both of the same snapshot. `{filter}` narrows both; `$1` is the position to read after, `$2`
/// the limit. (A trailer rather than two more columns on every row: an empty page needs them
/// too.) The bound cuts the page after its `LIMIT`, not in the scan: the page stays the plain
/// index range scan, where an upper bound the planner cannot estimate would make it pick a
/// bitmap scan and sort every remaining row. Cutting an ordered page leaves a prefix, which is
/// what a reader may return.
const READ_ALL: &str = "(SELECT p.*, NULL::bigint, NULL::bigint FROM \
     (SELECT {cols} FROM {s}.es_events WHERE {filter} AND position > $1 \
      ORDER BY position LIMIT $2) p WHERE p.position < {bound}) \
     UNION ALL SELECT NULL::bigint, NULL::uuid, NULL::text, NULL::bigint, NULL::text, \
     NULL::jsonb, NULL::jsonb, NULL::timestamptz, {bound}, \
     (SELECT coalesce(max(position), 0) FROM {s}.es_events WHERE {filter})";

/// The statements of one schema, formatted once.
#[derive(Debug)]
pub(super) struct Sql {
    pub append: String,
    pub stream_lock: String,
    pub tx_slot: String,
    pub by_ids: String,
    pub stream_state: String,
    pub insert: String,
    pub create_stream: String,
    pub read_forward: String,
    pub read_backward: String,
    pub read_all: String,
    pub read_category: String,
    pub read_type: String,
    pub head: String,
    pub delete: String,
    pub drop_snapshot: String,
    pub truncate: String,
    pub keep_version: String,
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
            // An ordinary append in one statement (the function is in `schema.rs`).
            append: f("SELECT written, first_version, last_position \
                 FROM {s}.es_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            // One lock per stream (a 64-bit hash of its name, seeded per schema): appends to
            // one stream take turns, appends to different streams do not wait for each other.
            stream_lock: f("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))"),
            // This transaction's id (assigned here, after the stream's lock, if it had none)
            // as the base of its positions, and how many of them earlier appends in the same
            // transaction used.
            // The stream's last position comes along: a transaction older than the stream's
            // last append must not write below it.
            tx_slot: f(
                "SELECT b.base, coalesce((SELECT max(position) FROM {s}.es_events \
                 WHERE position > b.base AND position < b.base + {span}), b.base) - b.base, \
                 (SELECT position FROM {s}.es_events WHERE stream = $1 \
                  ORDER BY version DESC LIMIT 1) \
                 FROM (SELECT pg_current_xact_id()::text::bigint * {span} AS base) b",
            ),
            by_ids: f("SELECT {cols} FROM {s}.es_events WHERE id = ANY($1)"),
            // The row's version is a floor (schema version 3): the stream's last event has
            // the rest.
            stream_state: f(
                "SELECT greatest(s.version, (SELECT e.version FROM {s}.es_events e \
                 WHERE e.stream = $1 ORDER BY e.version DESC LIMIT 1)), s.deleted \
                 FROM {s}.es_streams s WHERE s.stream = $1",
            ),
            insert: f("INSERT INTO {s}.es_events \
                 (position, id, stream, version, category, type, data, metadata) \
                 SELECT $7 + x.ord - 1, x.i, $2, $8 + x.ord - 1, $3, x.t, x.d, x.m \
                 FROM unnest($1::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) \
                 WITH ORDINALITY AS x(i, t, d, m, ord) RETURNING position"),
            // Only a stream's first append writes its row.
            create_stream: f(
                "INSERT INTO {s}.es_streams (stream, version) VALUES ($1, $2) \
                 ON CONFLICT (stream) DO NOTHING",
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
            // Before a truncation: the row keeps the version the last event may take away.
            keep_version: f("UPDATE {s}.es_streams s SET version = greatest(s.version, \
                 (SELECT e.version FROM {s}.es_events e WHERE e.stream = $1 \
                  ORDER BY e.version DESC LIMIT 1)) WHERE s.stream = $1"),
            save_snapshot: f("INSERT INTO {s}.es_snapshots (stream, version, state) \
                 VALUES ($1, $2, $3) ON CONFLICT (stream) DO UPDATE \
                 SET version = excluded.version, state = excluded.state"),
            load_snapshot: f("SELECT version, state FROM {s}.es_snapshots WHERE stream = $1"),
            list_streams: f("SELECT s.stream, greatest(s.version, (SELECT e.version \
                 FROM {s}.es_events e WHERE e.stream = s.stream ORDER BY e.version DESC LIMIT 1)), \
                 s.deleted FROM {s}.es_streams s \
                 WHERE s.stream COLLATE \"C\" > $1 ORDER BY s.stream COLLATE \"C\" LIMIT $2"),
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
    // The driver's own text for a server error is only "db error": the server's message says
    // what went wrong.
    let message = match e.as_db_error() {
        Some(db) => format!("{e}: {}", db.message()),
        None => e.to_string(),
    };
    Error::Storage { message, retryable }
}

/// One row of a [`READ_ALL`] statement: an event, or the trailer's bound and top.
pub(super) enum Bounded {
    Event(Box<RecordedEvent>),
    Trailer { bound: i64, top: i64 },
}

/// Reads one row of a [`READ_ALL`] statement.
pub(super) fn bounded(r: &Row) -> Result<Bounded, Error> {
    if r.try_get::<_, Option<i64>>(0).map_err(pg)?.is_some() {
        return Ok(Bounded::Event(Box::new(event(r)?)));
    }
    Ok(Bounded::Trailer {
        bound: r.try_get(COLUMN_COUNT).map_err(pg)?,
        top: r.try_get(COLUMN_COUNT + 1).map_err(pg)?,
    })
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
