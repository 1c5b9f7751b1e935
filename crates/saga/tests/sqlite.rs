//! The orchestrator on the embedded SQLite event store: an instance survives dropping the
//! orchestrator and the store and reopening the file, and two orchestrators on one store
//! never both record a transition. Real time: the store's writer thread is not tokio's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Participants, Reply, order_saga};
use flotilla_eventstore::{EventStore, ReadStream};
use flotilla_saga::{Orchestrator, SagaEvent, SagaStatus};
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};
use serde_json::json;

async fn open(path: &Path) -> Arc<SqliteEventStore> {
    let db = Database::open(Options::new(path)).unwrap();
    Arc::new(SqliteEventStore::open(db, None).await.unwrap())
}

fn orchestrator(store: Arc<SqliteEventStore>, participants: &Participants) -> Orchestrator {
    let store: Arc<dyn EventStore> = store;
    let builder = Orchestrator::builder(store);
    let def = order_saga(2).build().unwrap();
    participants.register(builder).saga(def).build().unwrap()
}

#[tokio::test]
async fn a_saga_resumes_from_the_file_after_orchestrator_and_store_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let participants = Participants::new();
    participants.script("charge", vec![Reply::Hang]);
    let (id, stopped_at) = {
        let store = open(&path).await;
        let first = orchestrator(store, &participants);
        let id = first
            .start("place-order", json!({"order_id": "o-1"}))
            .await
            .unwrap();
        participants.called("charge", 1).await;
        let state = first.get(&id).await.unwrap();
        (id, state)
    };
    assert_eq!(stopped_at.status, SagaStatus::Running);

    let second = orchestrator(open(&path).await, &participants);
    assert_eq!(second.recover().await.unwrap().resumed, vec![id.clone()]);
    let end = tokio::time::timeout(Duration::from_secs(20), second.wait(&id))
        .await
        .expect("the saga ends")
        .unwrap();
    assert_eq!(end.status, SagaStatus::Completed);
    assert_eq!(
        participants.names(),
        ["reserve", "charge", "charge", "confirm"]
    );
}

#[tokio::test]
async fn two_orchestrators_on_one_store_never_both_record_a_transition() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("sagas.db")).await;
    let participants = Participants::new();
    for f in ["reserve", "charge"] {
        participants.always(f, Reply::After(Duration::from_millis(5)));
    }
    // Every saga stays open until both orchestrators drive it.
    let gate = tokio::sync::watch::Sender::new(false);
    participants.always("confirm", Reply::Gate(gate.subscribe()));
    let (a, b) = (
        orchestrator(store.clone(), &participants),
        orchestrator(store.clone(), &participants),
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(a.start("place-order", json!({ "n": i })).await.unwrap());
    }
    assert_eq!(b.recover().await.unwrap().resumed.len(), ids.len());
    gate.send_replace(true);
    for id in &ids {
        let end = tokio::time::timeout(Duration::from_secs(20), a.wait(id))
            .await
            .unwrap();
        assert_eq!(end.unwrap().status, SagaStatus::Completed);
        b.wait(id).await.unwrap();
        let stream = flotilla_core::StreamId::new(format!("saga-{id}")).unwrap();
        let events = store.read_stream(&stream, ReadStream::all()).await.unwrap();
        let mut seen = HashSet::new();
        for e in events {
            let ev = SagaEvent::from_recorded(&e).unwrap();
            let identity = format!("{} {}", e.event_type, transition(&ev));
            assert!(
                seen.insert(identity.clone()),
                "{id}: {identity} recorded twice"
            );
        }
    }
}

fn transition(e: &SagaEvent) -> String {
    match e {
        SagaEvent::StepStarted { step, attempt, .. }
        | SagaEvent::StepSucceeded { step, attempt, .. }
        | SagaEvent::StepFailed { step, attempt, .. } => format!("{step} {attempt}"),
        _ => String::new(),
    }
}
