//! Reads that leave each event's data and metadata as the JSON text they were stored as.
//!
//! Decoding `data` into a `serde_json::Value` (a map, its keys and strings, each allocated) is
//! most of the cost of a typed read. A caller that decodes into its own types (a projection,
//! an export) or passes the JSON on unchanged reads [`RawEvent`]s instead: each payload is one
//! copy of the stored text, parsed only when asked. Even checking that text on every read
//! (`RawValue::from_string`) cost a third of the read rate, so it is not checked then: the
//! store only ever writes JSON it serialised itself, and decoding or serialising a
//! [`RawJson`] reports text that is not JSON (a file written by something else) as an error.

use chrono::{DateTime, Utc};
use flotilla_core::StreamId;
use flotilla_eventstore::{Error, Metadata, Position, ReadAll, ReadStream, RecordedEvent, Version};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{SqliteEventStore, read_all_rows, read_stream_rows, rows};

/// A stored event whose data and metadata are still JSON text.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// The id it was appended with.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream (1-based, contiguous).
    pub version: Version,
    /// Its global position.
    pub position: Position,
    /// The event's type.
    pub event_type: String,
    /// The payload, as stored.
    pub data: RawJson,
    /// Its metadata, as stored (a JSON object).
    pub metadata: RawJson,
    /// When it was stored (millisecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl RawEvent {
    /// The typed event, exactly as [`flotilla_eventstore::EventStore`]'s reads return it.
    pub fn decode(&self) -> Result<RecordedEvent, Error> {
        Ok(RecordedEvent {
            id: self.id,
            stream: self.stream.clone(),
            version: self.version,
            position: self.position,
            event_type: self.event_type.clone(),
            data: self.data.decode().map_err(Error::storage)?,
            metadata: self.metadata.decode::<Metadata>().map_err(Error::storage)?,
            recorded_at: self.recorded_at,
        })
    }
}

/// JSON text as the store holds it, parsed only when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// The text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Decodes the text into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The text as a checked [`RawValue`], for embedding in other JSON unchanged.
    pub fn to_raw_value(&self) -> Result<Box<RawValue>, serde_json::Error> {
        RawValue::from_string(self.0.clone().into())
    }
}

/// Serialises as the JSON it holds (not as a string).
impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl SqliteEventStore {
    /// [`EventStore::read_all`](flotilla_eventstore::EventStore::read_all) without decoding
    /// data and metadata: same filter, order, limit and errors.
    pub async fn read_all_raw(&self, read: ReadAll) -> Result<Vec<RawEvent>, Error> {
        flotilla_eventstore::model::validate_limit(read.limit)?;
        self.read(move |c| read_all_rows(c, &read, raw_event)).await
    }

    /// [`EventStore::read_stream`](flotilla_eventstore::EventStore::read_stream) without
    /// decoding data and metadata: same order, limit and errors (a deleted stream is refused).
    pub async fn read_stream_raw(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> Result<Vec<RawEvent>, Error> {
        flotilla_eventstore::model::validate_limit(read.limit)?;
        let s = stream.clone();
        self.read(move |c| read_stream_rows(c, &s, read, raw_event))
            .await
    }
}

/// Reads one row selected with [`rows::COLUMNS`], copying the JSON text as it is.
fn raw_event(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    let json =
        |col: usize| -> rusqlite::Result<RawJson> { Ok(RawJson(r.get_ref(col)?.as_str()?.into())) };
    Ok(RawEvent {
        position: r.get::<_, i64>(0)? as u64,
        id: Uuid::from_bytes(r.get(1)?),
        stream: StreamId::new(r.get_ref(2)?.as_str()?).map_err(|e| rows::bad(2, e))?,
        version: r.get::<_, i64>(3)? as u64,
        event_type: r.get(4)?,
        data: json(5)?,
        metadata: json(6)?,
        recorded_at: DateTime::<Utc>::from_timestamp_millis(r.get(7)?).unwrap_or_default(),
    })
}
