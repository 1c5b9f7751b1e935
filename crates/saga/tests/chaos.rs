//! Many order sagas against participants that fail, lose answers and hang at random, while
//! the orchestrator is dropped and rebuilt on the same store again and again. Participants
//! dedupe by idempotency key, as the docs ask; the test checks that every saga ends, that no
//! compensation runs without its step, and that stock is conserved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_eventstore::{EventStore, MemoryEventStore};
use flotilla_saga::{
    Action, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepCall, StepError, StepPolicy,
    TokioClock,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const SAGAS: usize = 200;
const STOCK: i64 = 1_000;

#[derive(Debug, Default)]
struct Ledger {
    stock: i64,
    reservations: HashSet<String>,
    payments: HashSet<String>,
    /// Keys already applied (the participant's dedupe table).
    applied: HashSet<String>,
    /// Every call: (function, idempotency key).
    calls: Vec<(String, String)>,
}

#[derive(Clone)]
struct Shop {
    ledger: Arc<Mutex<Ledger>>,
    rng: Arc<Mutex<StdRng>>,
}

impl Shop {
    fn new(seed: u64) -> Self {
        let ledger = Ledger {
            stock: STOCK,
            ..Ledger::default()
        };
        Self {
            ledger: Arc::new(Mutex::new(ledger)),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    fn roll(&self) -> u32 {
        self.rng.lock().unwrap().random_range(0..100)
    }

    /// Applies each key once, as a deduping participant does, with failures injected
    /// around it: refusals, lost answers and hangs.
    async fn call(&self, function: &str, call: StepCall) -> Result<Value, StepError> {
        let key = call.idempotency_key.clone();
        let done_before = {
            let mut l = self.ledger.lock().unwrap();
            l.calls.push((function.into(), key.clone()));
            l.applied.contains(&key)
        };
        let roll = self.roll();
        if roll < 10 {
            return Err(StepError::retryable("unavailable, nothing done"));
        }
        // A participant declines only work it has not done; a repeat gets the stored answer.
        if roll < 15 && !call.compensation && !done_before {
            return Err(StepError::permanent("declined"));
        }
        self.apply(function, &key);
        match roll {
            15..20 => Err(StepError::retryable("applied, answer lost")),
            20..23 => std::future::pending().await,
            _ => Ok(json!({ "key": key })),
        }
    }

    fn apply(&self, function: &str, key: &str) {
        let mut l = self.ledger.lock().unwrap();
        if !l.applied.insert(key.to_owned()) {
            return;
        }
        let step_key = key.trim_end_matches(":compensation").to_owned();
        match function {
            "reserve" => {
                l.stock -= 1;
                l.reservations.insert(step_key);
            }
            "release" => {
                let released = l.reservations.remove(&step_key);
                l.stock += i64::from(released);
            }
            "charge" => {
                l.payments.insert(step_key);
            }
            "refund" => {
                l.payments.remove(&step_key);
            }
            _ => {}
        }
    }
}

fn saga() -> SagaDefinition {
    let policy = |attempts| StepPolicy {
        timeout: Duration::from_secs(1),
        max_attempts: attempts,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    let step = |n: &str| StepBuilder::new(n, Action::function(n)).policy(policy(3));
    SagaDefinition::builder("order", 1)
        .step(step("reserve").compensate(Action::function("release")))
        .step(step("charge").compensate(Action::function("refund")))
        .step(step("confirm"))
        .build()
        .unwrap()
        .with_compensation_attempts(policy(12))
}

trait CompensationAttempts {
    fn with_compensation_attempts(self, p: StepPolicy) -> Self;
}

impl CompensationAttempts for SagaDefinition {
    fn with_compensation_attempts(mut self, p: StepPolicy) -> Self {
        for s in &mut self.steps {
            s.compensation_policy = p;
        }
        self
    }
}

fn orchestrator(store: &Arc<MemoryEventStore>, clock: TokioClock, shop: &Shop) -> Orchestrator {
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut b = Orchestrator::builder(dyn_store).clock(Arc::new(clock));
    for f in ["reserve", "release", "charge", "refund", "confirm"] {
        let shop = shop.clone();
        b = b.function(f, move |call| {
            let shop = shop.clone();
            async move { shop.call(f, call).await }
        });
    }
    b.saga(saga()).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn sagas_survive_random_failures_and_restarts_and_conserve_stock() {
    let (store, clock, shop) = (
        Arc::new(MemoryEventStore::new()),
        TokioClock::new(),
        Shop::new(7),
    );
    let mut orch = orchestrator(&store, clock, &shop);
    let mut ids = Vec::new();
    let mut restarts = 0;
    for round in 0..1000 {
        // Ten new sagas a round, so restarts land in every phase of some saga.
        for i in ids.len()..(ids.len() + 10).min(SAGAS) {
            ids.push(orch.start("order", json!({ "n": i })).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        let mut open = 0;
        for id in &ids {
            open += usize::from(!orch.get(id).await.unwrap().status.is_terminal());
        }
        if open == 0 && ids.len() == SAGAS {
            break;
        }
        assert!(round < 999, "{open} sagas never ended");
        // Kill and restart: every driver task is dropped mid-flight.
        drop(orch);
        orch = orchestrator(&store, clock, &shop);
        orch.recover().await.unwrap();
        restarts += 1;
    }
    assert!(restarts >= 15, "only {restarts} restarts happened");
    check(&orch, &ids, &shop, restarts).await;
}

async fn check(orch: &Orchestrator, ids: &[String], shop: &Shop, restarts: usize) {
    let mut states = Vec::new();
    for id in ids {
        states.push(orch.get(id).await.unwrap());
    }
    let l = shop.ledger.lock().unwrap();
    let called: HashSet<&str> = l.calls.iter().map(|(_, k)| k.as_str()).collect();
    for (f, key) in &l.calls {
        if let Some(step_key) = key.strip_suffix(":compensation") {
            assert!(called.contains(step_key), "{f} {key} ran without its step");
        }
    }
    let (mut completed, mut compensated) = (0, 0);
    for (id, state) in ids.iter().zip(states) {
        let (reserved, paid) = (
            l.reservations.contains(&format!("{id}:reserve")),
            l.payments.contains(&format!("{id}:charge")),
        );
        match state.status {
            SagaStatus::Completed => {
                completed += 1;
                assert!(reserved && paid, "{id} completed without its effects");
            }
            SagaStatus::Compensated => {
                compensated += 1;
                let calls: Vec<_> = l
                    .calls
                    .iter()
                    .filter(|(_, k)| k.starts_with(id.as_str()))
                    .collect();
                assert!(
                    !reserved && !paid,
                    "{id} compensated but effects remain ({reserved} {paid}): {state:#?} {calls:#?}"
                );
            }
            other => panic!("{id} ended {other:?}"),
        }
    }
    assert_eq!(
        STOCK - l.stock,
        l.reservations.len() as i64,
        "stock not conserved"
    );
    assert_eq!(completed + compensated, ids.len());
    assert!(
        completed > 0 && compensated > 0,
        "{completed} completed, {compensated} compensated"
    );
    assert!(l.calls.len() > l.applied.len(), "no call was ever repeated");
    println!(
        "{} sagas, {restarts} restarts: {completed} completed, {compensated} compensated; \
         {} participant calls for {} distinct keys",
        ids.len(),
        l.calls.len(),
        l.applied.len()
    );
}
