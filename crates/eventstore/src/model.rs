//! The data the store speaks: events going in, recorded events coming out, read requests.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use flotilla_core::StreamId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A stream's version is the version of its last event; the first event of a stream has
/// version 1. A global position is the event's place in the whole store; the first is 1.
pub type Version = u64;
/// An event's place in the store's total order (`$all`); starts at 1, never reused.
pub type Position = u64;

/// The optimistic-concurrency condition of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "version")]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no events yet (`Exact(0)` means the same).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (`None`: no events) satisfies this condition.
    pub fn admits(self, actual: Option<Version>) -> bool {
        match (self, actual) {
            (Self::Any, _) => true,
            (Self::NoStream | Self::Exact(0), None) => true,
            (Self::StreamExists, Some(_)) => true,
            (Self::Exact(n), Some(v)) => n == v,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// Who and what an event relates to. Unknown keys are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metadata {
    /// The id shared by every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the command or event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C trace context of the request that appended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The user on whose behalf it was appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Any other metadata.
    #[serde(default, flatten)]
    pub extra: BTreeMap<String, Value>,
}

// Written by hand: `#[serde(flatten)]` deserializes through a buffered copy of the whole map,
// and metadata is decoded for every event read.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MetadataVisitor)
    }
}

struct MetadataVisitor;

impl<'de> serde::de::Visitor<'de> for MetadataVisitor {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of event metadata")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let mut m = Metadata::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "correlation_id" => m.correlation_id = map.next_value()?,
                "causation_id" => m.causation_id = map.next_value()?,
                "traceparent" => m.traceparent = map.next_value()?,
                "user" => m.user = map.next_value()?,
                _ => {
                    m.extra.insert(key, map.next_value()?);
                }
            }
        }
        Ok(m)
    }
}

/// An event to append. Its `id` makes appends idempotent: retrying an append with the same
/// ids and content writes nothing new and succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique across the store.
    pub id: Uuid,
    /// The event's type (`OrderPlaced`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// Correlation, causation, trace, user.
    #[serde(default)]
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with a fresh time-ordered id and empty metadata.
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            data,
            metadata: Metadata::default(),
        }
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The id it was appended with.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream (1-based, contiguous).
    pub version: Version,
    /// Its global position (1-based, increasing, gaps possible).
    pub position: Position,
    /// The event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// Its metadata.
    pub metadata: Metadata,
    /// When it was stored (millisecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Whether `new` carries the same content as this event (same id, type, data, metadata).
    pub fn same_content(&self, new: &NewEvent) -> bool {
        self.id == new.id
            && self.event_type == new.event_type
            && self.data == new.data
            && self.metadata == new.metadata
    }
}

/// What a successful append wrote (or, for an idempotent retry, what was written before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Version of the first event of the batch.
    pub first_version: Version,
    /// Version of the last event: the stream's version afterwards (use it as the next
    /// expected version).
    pub last_version: Version,
    /// Global position of the last event.
    pub last_position: Position,
}

/// Which way to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// A read of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStream {
    /// Forward: events with version >= `from`. Backward: events with version <= `from`
    /// (`u64::MAX` for "from the end").
    pub from: Version,
    /// Most events returned (at least 1).
    pub limit: usize,
    /// Order.
    pub direction: Direction,
}

impl ReadStream {
    /// Forward from version `from`.
    pub fn forward(from: Version, limit: usize) -> Self {
        Self {
            from,
            limit,
            direction: Direction::Forward,
        }
    }

    /// Backward from the last event.
    pub fn backward(limit: usize) -> Self {
        Self {
            from: Version::MAX,
            limit,
            direction: Direction::Backward,
        }
    }

    /// The whole stream, oldest first.
    pub fn all() -> Self {
        Self::forward(1, usize::MAX)
    }

    /// Whether version `v` is in range for this read.
    pub fn includes(&self, v: Version) -> bool {
        match self.direction {
            Direction::Forward => v >= self.from,
            Direction::Backward => v <= self.from,
        }
    }
}

/// Which events of `$all` a read or subscription wants.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
pub enum Filter {
    /// Every event.
    #[default]
    All,
    /// Events of streams in this category (`order` for `order-123`).
    Category(String),
    /// Events of this type.
    EventType(String),
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        match self {
            Self::All => true,
            Self::Category(c) => e.stream.category() == c,
            Self::EventType(t) => &e.event_type == t,
        }
    }
}

/// A read of `$all` in position order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAll {
    /// Events with position > `after` (0: from the start).
    pub after: Position,
    /// Which events.
    pub filter: Filter,
    /// Most events returned (at least 1).
    pub limit: usize,
}

impl ReadAll {
    /// Every event after `after`, up to `limit`.
    pub fn after(after: Position, limit: usize) -> Self {
        Self {
            after,
            filter: Filter::All,
            limit,
        }
    }

    /// Restricts the read to `filter`.
    pub fn filtered(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
}

/// A stream's state folded up to `version`, so loading skips replaying what it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamId,
    /// The last event version the state includes.
    pub version: Version,
    /// The folded state.
    pub state: Value,
}

/// A stream as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamId,
    /// Its version (`None`: no events were ever appended).
    pub version: Option<Version>,
    /// Soft-deleted.
    pub deleted: bool,
}

/// Checks a batch's shape before any storage is touched.
pub fn validate_batch(events: &[NewEvent]) -> crate::Result<()> {
    if events.is_empty() {
        return Err(crate::Error::InvalidInput(
            "an append needs at least one event".into(),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for e in events {
        let control = e.event_type.chars().any(char::is_control);
        if e.event_type.is_empty() || e.event_type.len() > 200 || control {
            return Err(crate::Error::InvalidInput(format!(
                "event {}: type {:?} must be 1 to 200 characters, none of them control characters",
                e.id, e.event_type
            )));
        }
        if !ids.insert(e.id) {
            return Err(crate::Error::InvalidInput(format!(
                "event id {} appears twice in one batch",
                e.id
            )));
        }
    }
    Ok(())
}

/// Checks a read limit.
pub fn validate_limit(limit: usize) -> crate::Result<()> {
    if limit == 0 {
        return Err(crate::Error::InvalidInput(
            "limit must be at least 1".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keeps_known_and_unknown_keys_through_a_round_trip() {
        let text = r#"{"correlation_id":"c-1","user":null,"tenant":"acme","n":[1,2]}"#;
        let m: Metadata = serde_json::from_str(text).unwrap();
        assert_eq!(m.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(m.user, None);
        assert_eq!(m.causation_id, None);
        assert_eq!(m.extra["tenant"], "acme");
        assert_eq!(m.extra["n"], serde_json::json!([1, 2]));
        let again: Metadata = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn metadata_that_is_not_an_object_or_has_a_wrong_type_is_refused() {
        assert!(serde_json::from_str::<Metadata>("[]").is_err());
        assert!(serde_json::from_str::<Metadata>(r#"{"user": 7}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Metadata>("{}").unwrap(),
            Metadata::default()
        );
    }
}
