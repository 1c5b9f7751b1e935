//! An event store that delegates to a [`MemoryEventStore`] and lets a test decide which
//! appends and reads fail, as a dropped connection would.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Snapshot, StreamInfo, Version,
};
use tokio::sync::watch;

/// What fails. Both hooks default to "nothing".
pub trait Faults: Send + Sync + std::fmt::Debug + 'static {
    /// Sees every append with what the store answered; may answer something else (an
    /// answer lost after the commit).
    fn appended(&self, _events: &[NewEvent], result: Result<AppendResult>) -> Result<AppendResult> {
        result
    }

    /// Runs before every read of a stream; an error fails the read.
    fn reading(&self, _stream: &StreamId) -> Result<()> {
        Ok(())
    }
}

/// The store: `inner` holds the data, `faults` decides the failures.
#[derive(Debug)]
pub struct FaultyStore<F> {
    pub inner: Arc<MemoryEventStore>,
    pub faults: F,
}

impl<F: Faults> FaultyStore<F> {
    pub fn new(inner: Arc<MemoryEventStore>, faults: F) -> Self {
        Self { inner, faults }
    }
}

/// A retryable storage error, as a dropped connection gives.
pub fn reset() -> flotilla_eventstore::Error {
    flotilla_eventstore::Error::storage("connection reset")
}

#[async_trait]
impl<F: Faults> EventStore for FaultyStore<F> {
    async fn append(
        &self,
        s: &StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let result = self.inner.append(s, e, events.clone()).await;
        self.faults.appended(&events, result)
    }
    async fn read_stream(&self, s: &StreamId, r: ReadStream) -> Result<Vec<RecordedEvent>> {
        self.faults.reading(s)?;
        self.inner.read_stream(s, r).await
    }
    async fn stream_version(&self, s: &StreamId) -> Result<Option<Version>> {
        self.inner.stream_version(s).await
    }
    async fn read_all(&self, r: ReadAll) -> Result<Vec<RecordedEvent>> {
        self.inner.read_all(r).await
    }
    async fn delete_stream(&self, s: &StreamId, e: ExpectedVersion) -> Result<()> {
        self.inner.delete_stream(s, e).await
    }
    async fn truncate_stream(&self, s: &StreamId, before: Version) -> Result<u64> {
        self.inner.truncate_stream(s, before).await
    }
    async fn save_snapshot(&self, s: Snapshot) -> Result<()> {
        self.inner.save_snapshot(s).await
    }
    async fn load_snapshot(&self, s: &StreamId) -> Result<Option<Snapshot>> {
        self.inner.load_snapshot(s).await
    }
    async fn list_streams(&self, a: Option<&StreamId>, l: usize) -> Result<Vec<StreamInfo>> {
        self.inner.list_streams(a, l).await
    }
    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>> {
        self.inner.list_checkpoints().await
    }
    async fn load_checkpoint(&self, s: &str) -> Result<Option<Position>> {
        self.inner.load_checkpoint(s).await
    }
    async fn save_checkpoint(&self, s: &str, p: Position) -> Result<()> {
        self.inner.save_checkpoint(s, p).await
    }
    fn head(&self) -> watch::Receiver<Position> {
        self.inner.head()
    }
}
