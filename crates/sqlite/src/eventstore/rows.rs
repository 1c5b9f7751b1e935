//! Statements and row mapping shared by the store's reads and writes.

use chrono::{DateTime, Utc};
use flotilla_core::StreamId;
use flotilla_eventstore::plan::StreamState;
use flotilla_eventstore::{Error, Metadata, NewEvent, RecordedEvent};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

/// Columns every event query selects, in the order [`event`] reads them.
pub(super) const COLUMNS: &str = "position, id, stream, version, type, data, metadata, recorded_at";

/// Maps an engine error onto the contract: a busy or locked database may pass on retry.
pub(super) fn db(e: rusqlite::Error) -> Error {
    if crate::integrity::is_corruption(&e) {
        super::job::note_corruption(e.to_string());
    }
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    Error::Storage {
        message: e.to_string(),
        retryable,
    }
}

pub(super) fn bad(
    col: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(e))
}

/// Reads one event row selected with [`COLUMNS`]. Text columns are borrowed from the row, not
/// copied, before they are decoded.
pub(super) fn event(r: &Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let id: [u8; 16] = r.get(1)?;
    let text = |col: usize| r.get_ref(col).and_then(|v| Ok(v.as_str()?));
    Ok(RecordedEvent {
        position: r.get::<_, i64>(0)? as u64,
        id: Uuid::from_bytes(id),
        stream: StreamId::new(text(2)?).map_err(|e| bad(2, e))?,
        version: r.get::<_, i64>(3)? as u64,
        event_type: r.get(4)?,
        data: serde_json::from_str(text(5)?).map_err(|e| bad(5, e))?,
        metadata: serde_json::from_str::<Metadata>(text(6)?).map_err(|e| bad(6, e))?,
        recorded_at: DateTime::<Utc>::from_timestamp_millis(r.get(7)?).unwrap_or_default(),
    })
}

/// The event stored under `id`, if any.
pub(super) fn by_id(conn: &Connection, id: Uuid) -> rusqlite::Result<Option<RecordedEvent>> {
    let sql = format!("SELECT {COLUMNS} FROM es_events WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id.as_bytes()], event)
        .optional()
}

/// The stream's version and deletion flag.
pub(super) fn stream_state(conn: &Connection, stream: &StreamId) -> rusqlite::Result<StreamState> {
    conn.prepare_cached("SELECT version, deleted FROM es_streams WHERE stream = ?1")?
        .query_row([stream.as_str()], |r| {
            Ok(StreamState {
                version: Some(r.get::<_, i64>(0)? as u64),
                deleted: r.get(1)?,
            })
        })
        .optional()
        .map(Option::unwrap_or_default)
}

/// Inserts `events` at versions from `first`; returns the last position.
pub(super) fn insert(
    conn: &Connection,
    stream: &StreamId,
    first: u64,
    events: &[NewEvent],
) -> Result<u64, Error> {
    let now = Utc::now().timestamp_millis();
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO es_events (id, stream, version, category, type, data, metadata, \
             recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(db)?;
    for (i, e) in events.iter().enumerate() {
        let metadata = serde_json::to_string(&e.metadata).map_err(Error::storage)?;
        stmt.execute(params![
            e.id.as_bytes(),
            stream.as_str(),
            (first + i as u64) as i64,
            stream.category(),
            e.event_type,
            e.data.to_string(),
            metadata,
            now
        ])
        .map_err(db)?;
    }
    let last_position = conn.last_insert_rowid() as u64;
    let last = first + events.len() as u64 - 1;
    conn.prepare_cached(
        "INSERT INTO es_streams (stream, version) VALUES (?1, ?2) \
         ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
    )
    .map_err(db)?
    .execute(params![stream.as_str(), last as i64])
    .map_err(db)?;
    Ok(last_position)
}
