//! An event store that loses answers: appends are stored, but every other one answers a
//! retryable storage error, as a dropped connection after commit would. The orchestrator
//! retries with the same event ids, so nothing is recorded twice and the saga finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Snapshot, StreamInfo, Version,
};
use flotilla_saga::{Orchestrator, SagaStatus};
use serde_json::json;
use tokio::sync::watch;

#[derive(Debug, Default)]
struct LosesAnswers {
    inner: MemoryEventStore,
    appends: AtomicU64,
    /// Events handed to `append`, retries included.
    submitted: AtomicU64,
}

#[async_trait]
impl EventStore for LosesAnswers {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        self.submitted
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let result = self.inner.append(stream, expected, events).await?;
        if self
            .appends
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(2)
        {
            return Err(flotilla_eventstore::Error::storage(
                "connection reset after commit",
            ));
        }
        Ok(result)
    }
    async fn read_stream(&self, s: &StreamId, r: ReadStream) -> Result<Vec<RecordedEvent>> {
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

#[tokio::test(start_paused = true)]
async fn lost_append_answers_are_retried_without_recording_twice() {
    let store = Arc::new(LosesAnswers::default());
    let participants = common::Participants::new();
    participants.script("confirm", vec![common::permanent("refused")]);
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let builder = Orchestrator::builder(dyn_store);
    let orch = participants
        .register(builder)
        .saga(common::order_saga(1).build().unwrap())
        .build()
        .unwrap();
    let id = orch.start("place-order", json!({})).await.unwrap();
    let end = orch.wait(&id).await.unwrap();
    assert_eq!(end.status, SagaStatus::Compensated);
    assert_eq!(
        participants.names(),
        ["reserve", "charge", "confirm", "refund", "release"]
    );
    let stream = StreamId::new(format!("saga-{id}")).unwrap();
    let events = store
        .inner
        .read_stream(&stream, ReadStream::all())
        .await
        .unwrap();
    // Started, 3 x (started, outcome), cancelled, 2 x (started, succeeded), compensated.
    assert_eq!(events.len(), 1 + 6 + 1 + 4 + 1, "{events:#?}");
    // Half the writes lost their answer and were sent again.
    assert!(store.submitted.load(Ordering::Relaxed) > events.len() as u64);
}
