//! Statements and row mapping shared by the store's reads and writes.

use chrono::{DateTime, Utc};
use flotilla_core::StreamId;
use flotilla_eventstore::plan::StreamState;
use flotilla_eventstore::{Error, Metadata, NewEvent, RecordedEvent};
use rusqlite::types::Type;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, params};
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

/// The statements an append runs, prepared once for every append run together.
pub(super) struct Statements<'c> {
    conn: &'c Connection,
    by_id: CachedStatement<'c>,
    state: CachedStatement<'c>,
    insert: CachedStatement<'c>,
    stream: CachedStatement<'c>,
}

/// An event's `data` and `metadata` as the JSON text stored, encoded before the append reaches
/// the writer thread.
#[derive(Debug)]
pub(super) struct Encoded {
    pub(super) data: String,
    pub(super) metadata: String,
}

impl Encoded {
    pub(super) fn new(e: &NewEvent) -> Result<Self, Error> {
        Ok(Self {
            data: e.data.to_string(),
            metadata: serde_json::to_string(&e.metadata).map_err(Error::storage)?,
        })
    }
}

impl<'c> Statements<'c> {
    pub(super) fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            by_id: conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM es_events WHERE id = ?1"))?,
            state: conn
                .prepare_cached("SELECT version, deleted FROM es_streams WHERE stream = ?1")?,
            insert: conn.prepare_cached(
                "INSERT INTO es_events (id, stream, version, category, type, data, metadata, \
                 recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            stream: conn.prepare_cached(
                "INSERT INTO es_streams (stream, version) VALUES (?1, ?2) \
                 ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            )?,
        })
    }

    /// The event stored under `id`, if any.
    pub(super) fn by_id(&mut self, id: Uuid) -> rusqlite::Result<Option<RecordedEvent>> {
        self.by_id.query_row([id.as_bytes()], event).optional()
    }

    /// The stream's version and deletion flag.
    pub(super) fn stream_state(&mut self, stream: &StreamId) -> rusqlite::Result<StreamState> {
        read_state(&mut self.state, stream)
    }

    /// Inserts `events` (encoded as `encoded`) at versions from `first`, recorded at `now`;
    /// returns the last position.
    pub(super) fn insert(
        &mut self,
        stream: &StreamId,
        first: u64,
        events: &[NewEvent],
        encoded: &[Encoded],
        now: i64,
    ) -> rusqlite::Result<u64> {
        let category = stream.category();
        for (i, (e, enc)) in events.iter().zip(encoded).enumerate() {
            self.insert.execute(params![
                e.id.as_bytes(),
                stream.as_str(),
                (first + i as u64) as i64,
                category,
                e.event_type,
                enc.data,
                enc.metadata,
                now
            ])?;
        }
        let last_position = self.conn.last_insert_rowid() as u64;
        let last = first + events.len() as u64 - 1;
        self.stream.execute(params![stream.as_str(), last as i64])?;
        Ok(last_position)
    }
}

/// The stream's version and deletion flag.
pub(super) fn stream_state(conn: &Connection, stream: &StreamId) -> rusqlite::Result<StreamState> {
    read_state(
        &mut conn.prepare_cached("SELECT version, deleted FROM es_streams WHERE stream = ?1")?,
        stream,
    )
}

fn read_state(st: &mut CachedStatement<'_>, stream: &StreamId) -> rusqlite::Result<StreamState> {
    st.query_row([stream.as_str()], |r| {
        Ok(StreamState {
            version: Some(r.get::<_, i64>(0)? as u64),
            deleted: r.get(1)?,
        })
    })
    .optional()
    .map(Option::unwrap_or_default)
}
