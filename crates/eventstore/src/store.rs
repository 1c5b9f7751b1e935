//! The contract every event store implements.

use std::fmt::Debug;

use async_trait::async_trait;
use flotilla_core::StreamId;
use tokio::sync::watch;

use crate::Result;
use crate::model::{
    AppendResult, ExpectedVersion, NewEvent, Position, ReadAll, ReadStream, RecordedEvent,
    Snapshot, StreamInfo, Version,
};

/// An event store: streams of events with optimistic concurrency, a global order, snapshots
/// and subscriber checkpoints.
///
/// Guarantees every implementation gives (the conformance suite checks each):
/// - `append` is atomic: all events of a batch are stored, at contiguous versions, or none.
///   When it returns `Ok`, the events are durable (for the backend's durability setting) and
///   visible to every read that starts afterwards.
/// - Versions in a stream are 1, 2, 3, ... with no gap; positions increase in append order.
/// - `read_all` never returns an event at position `p` while an event at a lower position may
///   still become visible: a reader that continues from the last position it saw never skips
///   an event ([`head`](EventStore::head) is the highest position below which that holds).
#[async_trait]
pub trait EventStore: Send + Sync + Debug + 'static {
    /// Appends `events` to `stream` if it is at `expected`.
    ///
    /// Idempotent by event id: if every id is already stored, in this stream, at contiguous
    /// versions and with the same content, nothing is written and the original result is
    /// returned (a retried request succeeds). Errors: [`Error::WrongExpectedVersion`] (reload
    /// and decide again), [`Error::IdempotencyViolation`] (an id reused for other content),
    /// [`Error::StreamDeleted`], [`Error::InvalidInput`] (an empty batch, a duplicated id),
    /// [`Error::Storage`] (unknown outcome: retry with the same ids).
    ///
    /// [`Error::WrongExpectedVersion`]: crate::Error::WrongExpectedVersion
    /// [`Error::IdempotencyViolation`]: crate::Error::IdempotencyViolation
    /// [`Error::StreamDeleted`]: crate::Error::StreamDeleted
    /// [`Error::InvalidInput`]: crate::Error::InvalidInput
    /// [`Error::Storage`]: crate::Error::Storage
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult>;

    /// Reads one stream. A stream with no events reads as empty; a deleted one answers
    /// [`Error::StreamDeleted`](crate::Error::StreamDeleted). Truncated events are gone.
    async fn read_stream(&self, stream: &StreamId, read: ReadStream) -> Result<Vec<RecordedEvent>>;

    /// The stream's version (`None`: no events were ever appended). Deleted streams answer
    /// [`Error::StreamDeleted`](crate::Error::StreamDeleted).
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>>;

    /// Reads `$all` in position order, optionally filtered, including events of deleted
    /// streams that were not truncated yet.
    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>>;

    /// Soft-deletes `stream` if it is at `expected`: it can no longer be read by stream or
    /// appended to, its snapshot is dropped, but its events stay in `$all` (subscribers and
    /// projections still see history) until [`truncate_stream`](EventStore::truncate_stream)
    /// removes them. Deleting a deleted stream is a no-op.
    async fn delete_stream(&self, stream: &StreamId, expected: ExpectedVersion) -> Result<()>;

    /// Physically removes the stream's events with version < `before` (from the stream and from
    /// `$all`); returns how many were removed. The stream's version does not change and
    /// positions are never reused. `truncate_stream(s, u64::MAX)` after a delete purges it.
    async fn truncate_stream(&self, stream: &StreamId, before: Version) -> Result<u64>;

    /// Stores `snapshot`, replacing an older one of the same stream. A snapshot beyond the
    /// stream's version is refused as invalid input.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()>;

    /// The stream's latest snapshot.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>>;

    /// Streams in id order after `after` (`None`: from the first), at most `limit`, deleted
    /// ones included and marked. Only streams that were written to or deleted are listed.
    async fn list_streams(&self, after: Option<&StreamId>, limit: usize)
    -> Result<Vec<StreamInfo>>;

    /// Every persistent subscriber's checkpoint, by name (for `projections ls` and lag).
    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>>;

    /// The last position a named persistent subscriber has processed.
    async fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Position>>;

    /// Records that `subscriber` has processed everything up to `position`.
    async fn save_checkpoint(&self, subscriber: &str, position: Position) -> Result<()>;

    /// The highest position at or below which every event is visible to reads. It only
    /// grows; subscriptions wait on it to go live. A store reached over the network learns it
    /// from a stream of its own, so it may trail an append's answer briefly.
    fn head(&self) -> watch::Receiver<Position>;
}

/// Checks a subscriber name (1 to 200 printable ASCII characters).
pub fn validate_subscriber(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 200 && name.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidInput(format!(
            "subscriber name {:?} must be 1 to 200 printable ASCII characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}
