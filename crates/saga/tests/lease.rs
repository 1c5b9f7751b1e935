//! Orchestrators sharing a store under leases: each drives the instances it started, and when
//! one is killed (dropped mid-saga, its tasks aborted, its lease no longer renewed) another
//! claims its instances within the lease's bound and finishes them; no transition is recorded
//! twice and no finished step runs again. On PostgreSQL (skips visibly without a server), each
//! orchestrator with its own connection pool as two processes would have, and on the
//! in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Participants, Reply, order_saga, permanent};
use flotilla_eventstore::{EventStore, MemoryEventStore, ReadStream};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_saga::{Orchestrator, SagaEvent, SagaObserver, SagaState, SagaStatus};
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;
use tokio::sync::watch;

const TTL: Duration = Duration::from_millis(1500);

/// The instances that ended on an orchestrator.
#[derive(Debug)]
struct Ends(watch::Sender<HashMap<String, SagaStatus>>);

impl SagaObserver for Ends {
    fn ended(&self, state: &SagaState) {
        let (id, status) = (state.id.clone(), state.status.clone());
        self.0.send_modify(|e| {
            e.insert(id, status);
        });
    }
}

fn orchestrator(
    store: Arc<dyn EventStore>,
    owner: &str,
    participants: &Participants,
    ends: &Arc<Ends>,
) -> Orchestrator {
    let mut def = order_saga(2).build().unwrap();
    // The gated calls must not time out: every call here is made once per orchestrator.
    for s in &mut def.steps {
        s.policy.timeout = Duration::from_secs(30);
        s.compensation_policy.timeout = Duration::from_secs(30);
    }
    let builder = Orchestrator::builder(store)
        .lease(owner, TTL)
        .observer(ends.clone());
    participants.register(builder).saga(def).build().unwrap()
}

/// A participant set whose last step (confirm, or release after a declined charge) waits
/// for `gate`.
fn participants(gate: &watch::Sender<bool>) -> Participants {
    let p = Participants::new();
    for f in ["reserve", "charge", "refund"] {
        p.always(f, Reply::After(Duration::from_millis(5)));
    }
    for f in ["confirm", "release"] {
        p.always(f, Reply::Gate(gate.subscribe()));
    }
    p
}

async fn start(orch: &Orchestrator, p: &Participants, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        if i % 4 == 0 {
            p.script("charge", vec![permanent("card declined")]);
        }
        ids.push(orch.start("place-order", json!({ "n": i })).await.unwrap());
    }
    ids
}

async fn events(store: &dyn EventStore, id: &str) -> Vec<SagaEvent> {
    let stream = flotilla_core::StreamId::new(format!("saga-{id}")).unwrap();
    let recorded = store.read_stream(&stream, ReadStream::all()).await.unwrap();
    recorded
        .iter()
        .map(|e| SagaEvent::from_recorded(e).unwrap())
        .collect()
}

fn transition(e: &SagaEvent) -> String {
    match e {
        SagaEvent::StepStarted { step, attempt, .. }
        | SagaEvent::StepSucceeded { step, attempt, .. }
        | SagaEvent::StepFailed { step, attempt, .. }
        | SagaEvent::CompensationStarted { step, attempt, .. }
        | SagaEvent::CompensationSucceeded { step, attempt }
        | SagaEvent::CompensationFailed { step, attempt, .. } => {
            format!("{} {step} {attempt}", e.kind())
        }
        SagaEvent::Claimed { owner, .. } => format!("claimed by {owner}"),
        e if e.is_terminal() => "end".into(),
        e => e.kind().into(),
    }
}

/// The saga ids a participant set was called for.
fn sagas_seen(p: &Participants) -> HashSet<String> {
    p.calls().into_iter().map(|c| c.saga_id).collect()
}

async fn a_killed_orchestrators_sagas_are_taken_over(
    store_a: Arc<dyn EventStore>,
    store_b: Arc<dyn EventStore>,
) {
    let gate = watch::Sender::new(false);
    let (pa, pb) = (participants(&gate), participants(&gate));
    let ends = Arc::new(Ends(watch::Sender::new(HashMap::new())));
    let a = orchestrator(store_a, "a", &pa, &ends);
    let b = orchestrator(store_b.clone(), "b", &pb, &ends);
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    let ids_a = start(&a, &pa, 10).await;
    let ids_b = start(&b, &pb, 10).await;
    // Every saga now waits at its last step, each on the orchestrator that started it.
    pa.called_any(&["confirm", "release"], 10).await;
    pb.called_any(&["confirm", "release"], 10).await;
    // Let b's keeper look a few times while a is alive: it takes nothing.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(sagas_seen(&pa), ids_a.iter().cloned().collect());
    assert_eq!(sagas_seen(&pb), ids_b.iter().cloned().collect());

    let killed = Instant::now();
    drop(a);
    gate.send_replace(true);
    let all: HashSet<_> = ids_a.iter().chain(&ids_b).cloned().collect();
    let mut ended = ends.0.subscribe();
    let wait = ended.wait_for(|e| all.iter().all(|id| e.contains_key(id)));
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("b finishes every saga")
        .unwrap();
    println!(
        "b took over and finished a's sagas {} ms after a was dropped (lease ttl {} ms)",
        killed.elapsed().as_millis(),
        TTL.as_millis()
    );

    for id in &all {
        let status = &ends.0.borrow()[id];
        assert!(
            matches!(status, SagaStatus::Completed | SagaStatus::Compensated),
            "{id}: {status:?}"
        );
        let events = events(store_b.as_ref(), id).await;
        let mut seen = HashSet::new();
        for t in events.iter().map(transition) {
            assert!(seen.insert(t.clone()), "{id}: {t} recorded twice");
        }
        let owners: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SagaEvent::Claimed { owner, .. } => Some(owner.as_str()),
                _ => None,
            })
            .collect();
        let expected: &[&str] = if ids_a.contains(id) {
            &["a", "b"]
        } else {
            &["b"]
        };
        assert_eq!(owners, expected, "{id}");
    }
    // b ran again only the step a was in the middle of (same key); what a had finished
    // (reserve, charge, refund) b never repeated.
    let by_a: HashSet<_> = pa.calls().into_iter().map(|c| c.key).collect();
    for call in pb.calls() {
        if by_a.contains(&call.key) {
            assert!(
                ["confirm", "release"].contains(&call.function.as_str()),
                "b repeated {} of {}",
                call.function,
                call.saga_id
            );
        }
    }
    let mut keys_b = HashSet::new();
    for c in pb.calls() {
        assert!(keys_b.insert(c.key.clone()), "b called {c:?} twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_killed_orchestrators_sagas_are_taken_over_by_the_other() {
    let Some(url) = backend(Backend::Postgres, "saga leases on postgres") else {
        return;
    };
    let options = Options {
        schema: unique_name("saga_lease"),
        pool_size: 4,
        ..Options::new(url)
    };
    let store_a = Arc::new(PgEventStore::open(&options).await.unwrap());
    let store_b = Arc::new(PgEventStore::open(&options).await.unwrap());
    a_killed_orchestrators_sagas_are_taken_over(store_a, store_b.clone()).await;
    let client = store_b.pool().get().await.unwrap();
    let drop_schema = format!("DROP SCHEMA {} CASCADE", options.schema);
    client.batch_execute(&drop_schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_a_killed_orchestrators_sagas_are_taken_over_by_the_other() {
    let store = Arc::new(MemoryEventStore::new());
    a_killed_orchestrators_sagas_are_taken_over(store.clone(), store).await;
}
