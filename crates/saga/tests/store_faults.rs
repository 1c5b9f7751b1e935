//! An event store that loses answers: appends are stored, but every other one answers a
//! retryable storage error, as a dropped connection after commit would. The orchestrator
//! retries with the same event ids, so nothing is recorded twice and the saga finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::faulty::{Faults, FaultyStore};
use flotilla_core::StreamId;
use flotilla_eventstore::{AppendResult, EventStore, NewEvent, ReadStream, Result};
use flotilla_saga::{Orchestrator, SagaStatus};
use serde_json::json;

/// Every other append answers an error after it was stored.
#[derive(Debug, Default)]
struct LosesAnswers {
    appends: AtomicU64,
    /// Events handed to `append`, retries included.
    submitted: AtomicU64,
}

impl Faults for LosesAnswers {
    fn appended(&self, events: &[NewEvent], result: Result<AppendResult>) -> Result<AppendResult> {
        self.submitted
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let result = result?;
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
}

#[tokio::test(start_paused = true)]
async fn lost_append_answers_are_retried_without_recording_twice() {
    let store = Arc::new(FaultyStore::new(Arc::default(), LosesAnswers::default()));
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
    assert!(store.faults.submitted.load(Ordering::Relaxed) > events.len() as u64);
}
