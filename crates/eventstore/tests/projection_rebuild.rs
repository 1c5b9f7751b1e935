//! Rebuild ordering: the checkpoint never stays ahead of an emptied read model, and a stop
//! request ends a rebuild at a page boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::projection::{self, BoxError, Projection, Rebuilt};
use flotilla_eventstore::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent, RecordedEvent};
use serde_json::json;

/// Records the checkpoint it finds in the store when it is reset, and what it applied.
struct Recorder {
    store: Arc<MemoryEventStore>,
    checkpoint_at_reset: Option<Option<u64>>,
    applied: Vec<u64>,
}

#[async_trait]
impl Projection for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.applied.push(event.position);
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.checkpoint_at_reset = Some(self.store.load_checkpoint("recorder").await?);
        self.applied.clear();
        Ok(())
    }
}

async fn store_with(n: u32) -> Arc<MemoryEventStore> {
    let store = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("order-1").unwrap();
    for i in 0..n {
        let event = NewEvent::new("OrderPlaced", json!({ "i": i }));
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    store.save_checkpoint("recorder", n.into()).await.unwrap();
    store
}

fn recorder(store: &Arc<MemoryEventStore>) -> Recorder {
    Recorder {
        store: Arc::clone(store),
        checkpoint_at_reset: None,
        applied: vec![1, 2, 3],
    }
}

#[tokio::test]
async fn the_checkpoint_goes_back_to_zero_before_the_read_model_is_reset() {
    let store = store_with(3).await;
    let mut model = recorder(&store);
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let at = projection::rebuild(dyn_store, &mut model, |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        model.checkpoint_at_reset,
        Some(Some(0)),
        "an interrupted reset must leave a checkpoint that replays everything"
    );
    assert_eq!((at, model.applied), (3, vec![1, 2, 3]));
}

#[tokio::test]
async fn a_stop_request_ends_the_rebuild_between_pages_with_the_checkpoint_at_zero() {
    let store = store_with(3).await;
    let mut model = recorder(&store);
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let outcome = projection::rebuild_until(dyn_store, &mut model, |_, _| {}, || true)
        .await
        .unwrap();
    assert_eq!(outcome, Rebuilt::Stopped(0));
    assert!(model.applied.is_empty(), "reset, nothing replayed yet");
    assert_eq!(
        store.load_checkpoint("recorder").await.unwrap(),
        Some(0),
        "the next run replays from the start"
    );
}
