//! `recover()` when the store misses a read: an unfinished instance whose stream read fails
//! once with a retryable storage error is still resumed. Found by the network simulation
//! (`crates/simulation`, saga scenario, seed 165): before, the instance was reported as
//! skipped, and a single orchestrator (which recovers only at start) never drove it again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{Participants, Reply, order_saga};
use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Snapshot, StreamInfo, Version,
};
use flotilla_saga::Orchestrator;
use serde_json::json;
use tokio::sync::watch;

/// A store whose first read of a saga stream fails as a dropped connection would.
#[derive(Debug)]
struct MissesOneRead {
    inner: Arc<MemoryEventStore>,
    missed: AtomicBool,
}

#[async_trait]
impl EventStore for MissesOneRead {
    async fn append(
        &self,
        s: &StreamId,
        e: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        self.inner.append(s, e, events).await
    }
    async fn read_stream(&self, s: &StreamId, r: ReadStream) -> Result<Vec<RecordedEvent>> {
        if s.as_str().starts_with("saga-") && !self.missed.swap(true, Ordering::Relaxed) {
            return Err(flotilla_eventstore::Error::storage("connection reset"));
        }
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
async fn a_missed_read_during_recovery_still_resumes_the_instance() {
    let mut def = order_saga(1).build().unwrap();
    def.steps[1].policy.timeout = Duration::from_secs(3600);
    let participants = Participants::new();
    participants.script("charge", vec![Reply::Hang]);
    let inner = Arc::new(MemoryEventStore::new());
    let first = participants
        .register(Orchestrator::builder(inner.clone()))
        .saga(def.clone())
        .build()
        .unwrap();
    let id = first.start("place-order", json!({})).await.unwrap();
    participants.called("charge", 1).await;
    drop(first);

    let flaky = Arc::new(MissesOneRead {
        inner,
        missed: AtomicBool::new(false),
    });
    let second = participants
        .register(Orchestrator::builder(flaky.clone()))
        .saga(def)
        .build()
        .unwrap();
    let report = second.recover().await.unwrap();
    assert!(flaky.missed.load(Ordering::Relaxed), "the read was missed");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.resumed, vec![id.clone()]);
    let end = second.wait(&id).await.unwrap();
    assert!(end.status.is_terminal(), "{:?}", end.status);
}
