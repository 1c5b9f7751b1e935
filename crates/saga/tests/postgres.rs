//! Two orchestrators, each with its own connection pool (as two processes would have), share
//! one PostgreSQL event store: they never both record a transition, and when one is dropped
//! mid-flight the other finishes its instances. Skips visibly without a server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Participants, Reply, order_saga, permanent};
use flotilla_eventstore::{EventStore, ReadStream};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_saga::{Orchestrator, SagaEvent, SagaStatus};
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;

async fn store(options: &Options) -> Arc<PgEventStore> {
    Arc::new(
        PgEventStore::open(options)
            .await
            .expect("the event store opens"),
    )
}

fn orchestrator(store: Arc<PgEventStore>, participants: &Participants) -> Orchestrator {
    let store: Arc<dyn EventStore> = store;
    let builder = Orchestrator::builder(store);
    let mut def = order_saga(2).build().unwrap();
    for s in &mut def.steps {
        s.policy.timeout = Duration::from_secs(10);
    }
    participants.register(builder).saga(def).build().unwrap()
}

/// `kind step attempt` of every transition; a repeat means two writers recorded it.
fn transitions(events: &[SagaEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            SagaEvent::StepStarted { step, attempt, .. }
            | SagaEvent::StepSucceeded { step, attempt, .. }
            | SagaEvent::StepFailed { step, attempt, .. }
            | SagaEvent::CompensationStarted { step, attempt, .. }
            | SagaEvent::CompensationSucceeded { step, attempt }
            | SagaEvent::CompensationFailed { step, attempt, .. } => {
                format!("{} {step} {attempt}", e.kind())
            }
            e if e.is_terminal() => "end".into(),
            e => e.kind().into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrators_on_one_postgres_store_split_nothing_twice_and_take_over() {
    let Some(url) = backend(Backend::Postgres, "saga orchestrators on postgres") else {
        return;
    };
    let options = Options {
        schema: unique_name("saga"),
        pool_size: 4,
        ..Options::new(url)
    };
    let (store_a, store_b) = (store(&options).await, store(&options).await);
    let participants = Participants::new();
    for f in ["reserve", "charge", "refund"] {
        participants.always(f, Reply::After(Duration::from_millis(20)));
    }
    // Every saga stays open (confirming, or releasing after a declined charge) until one
    // orchestrator has been dropped.
    let gate = tokio::sync::watch::Sender::new(false);
    for f in ["confirm", "release"] {
        participants.always(f, Reply::Gate(gate.subscribe()));
    }
    let a = orchestrator(store_a.clone(), &participants);
    let b = orchestrator(store_b.clone(), &participants);
    let mut ids = Vec::new();
    for i in 0..20 {
        if i % 4 == 0 {
            participants.script("charge", vec![permanent("card declined")]);
        }
        ids.push(a.start("place-order", json!({ "n": i })).await.unwrap());
    }
    // b's store learns of a's appends by polling; recover() reads up to b's head.
    let a_head = *store_a.head().borrow();
    let mut b_head = store_b.head();
    b_head.wait_for(|p| *p >= a_head).await.unwrap();
    let resumed = b.recover().await.unwrap().resumed;
    assert_eq!(resumed.len(), ids.len());
    drop(a); // b takes everything over
    gate.send_replace(true);

    for id in &ids {
        let end = tokio::time::timeout(Duration::from_secs(30), b.wait(id)).await;
        let end = end.expect("the saga ends").unwrap();
        assert!(matches!(
            end.status,
            SagaStatus::Completed | SagaStatus::Compensated
        ));
        let stream = flotilla_core::StreamId::new(format!("saga-{id}")).unwrap();
        let recorded = store_a
            .read_stream(&stream, ReadStream::all())
            .await
            .unwrap();
        let events: Vec<_> = recorded
            .iter()
            .map(|e| SagaEvent::from_recorded(e).unwrap())
            .collect();
        let mut seen = HashSet::new();
        for t in transitions(&events) {
            assert!(seen.insert(t.clone()), "{id}: {t} recorded twice");
        }
    }
    let client = store_a.pool().get().await.unwrap();
    let drop_schema = format!("DROP SCHEMA {} CASCADE", options.schema);
    client.batch_execute(&drop_schema).await.unwrap();
}
