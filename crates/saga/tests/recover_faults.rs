//! Storage that misses a read while instances are resumed or driven. `recover()`: an
//! unfinished instance whose stream read fails once with a retryable storage error is still
//! resumed — found by the network simulation (`crates/simulation`, saga scenario, seed 165):
//! before, the instance was reported as skipped, and a single orchestrator (which recovers only
//! at start) never drove it again. A driver: a failed catch-up read is read again rather than
//! ending the driver, which would leave the instance unfinished the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::faulty::{Faults, FaultyStore, reset};
use common::{Participants, Reply, order_saga};
use flotilla_core::StreamId;
use flotilla_eventstore::{AppendResult, MemoryEventStore, NewEvent, Result};
use flotilla_saga::{Orchestrator, SagaStatus};
use serde_json::json;

/// The first read of a saga stream fails.
#[derive(Debug, Default)]
struct MissesOneRead {
    missed: AtomicBool,
}

impl Faults for MissesOneRead {
    fn reading(&self, s: &StreamId) -> Result<()> {
        if s.as_str().starts_with("saga-") && !self.missed.swap(true, Ordering::Relaxed) {
            return Err(reset());
        }
        Ok(())
    }
}

/// Once a cancel is stored, the next `misses` reads of saga streams fail: the driver the
/// cancel wakes meets them when it catches up.
#[derive(Debug)]
struct MissesReadsAfterCancel {
    misses: AtomicU32,
    armed: AtomicBool,
}

impl Faults for MissesReadsAfterCancel {
    fn appended(&self, events: &[NewEvent], result: Result<AppendResult>) -> Result<AppendResult> {
        if result.is_ok() && events.iter().any(|e| e.event_type == "SagaCancelled") {
            self.armed.store(true, Ordering::SeqCst);
        }
        result
    }

    fn reading(&self, s: &StreamId) -> Result<()> {
        let armed = self.armed.load(Ordering::SeqCst) && s.as_str().starts_with("saga-");
        if armed && self.misses.load(Ordering::SeqCst) > 0 {
            self.misses.fetch_sub(1, Ordering::SeqCst);
            return Err(reset());
        }
        Ok(())
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

    let flaky = Arc::new(FaultyStore::new(inner, MissesOneRead::default()));
    let second = participants
        .register(Orchestrator::builder(flaky.clone()))
        .saga(def)
        .build()
        .unwrap();
    let report = second.recover().await.unwrap();
    assert!(
        flaky.faults.missed.load(Ordering::Relaxed),
        "the read was missed"
    );
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.resumed, vec![id.clone()]);
    let end = second.wait(&id).await.unwrap();
    assert!(end.status.is_terminal(), "{:?}", end.status);
}

/// A driver woken by a cancel catches up before compensating; when that read fails with a
/// retryable error it reads again rather than stopping, which would leave the instance
/// unfinished until the next `recover()` (a single orchestrator runs it only at start).
#[tokio::test(start_paused = true)]
async fn a_driver_whose_catch_up_read_fails_reads_again() {
    let mut def = order_saga(1).build().unwrap();
    def.steps[1].policy.timeout = Duration::from_secs(3600);
    let participants = Participants::new();
    participants.script("charge", vec![Reply::Hang]);
    let faults = MissesReadsAfterCancel {
        misses: AtomicU32::new(3),
        armed: AtomicBool::new(false),
    };
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryEventStore::new()), faults));
    let orchestrator = participants
        .register(Orchestrator::builder(store.clone()))
        .saga(def)
        .build()
        .unwrap();
    let id = orchestrator.start("place-order", json!({})).await.unwrap();
    participants.called("charge", 1).await;
    orchestrator.cancel(&id).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            if let Ok(state) = orchestrator.wait(&id).await
                && state.status.is_terminal()
            {
                return state;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the cancelled saga ends");
    assert_eq!(
        store.faults.misses.load(Ordering::SeqCst),
        0,
        "the reads were missed"
    );
    assert_eq!(end.status, SagaStatus::Compensated);
}
