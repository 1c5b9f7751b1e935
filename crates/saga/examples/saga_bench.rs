//! Saga throughput and latency (docs/BENCHMARKS.md, "Sagas"): N three-step sagas started by
//! C concurrent clients, each waiting for its saga to end, on the embedded SQLite store and on
//! PostgreSQL. Steps are in-process functions, or with `--http` calls to a local axum
//! participant found through static discovery. The baseline, in the same run on the same
//! engine, is the raw event store: C concurrent writers each appending a saga's events to a
//! fresh stream, one append per transition, which is what an orchestrator that batched
//! nothing would have to do at least.
//!
//! `bench/saga/run.sh [sqlite|postgres|all] [--sagas N] [--concurrency C] [--http]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use flotilla_core::{ServiceInstance, ServiceName, StreamId};
use flotilla_discovery::StaticDiscovery;
use flotilla_eventstore::{EventStore, ExpectedVersion, NewEvent};
use flotilla_saga::{
    Action, Orchestrator, SagaDefinition, SagaStatus, StepBuilder, StepCall, StepError,
};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
struct Args {
    sagas: usize,
    concurrency: usize,
    http: bool,
}

/// Events a three-step saga records: started, 3 × (step started, step succeeded), completed.
const EVENTS_PER_SAGA: usize = 8;

#[tokio::main]
async fn main() {
    let mut engine = "all".to_owned();
    let mut args = Args {
        sagas: 5_000,
        concurrency: 500,
        http: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> usize {
            let v = it.next().unwrap_or_default();
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got {v:?}"))
        };
        match a.as_str() {
            "--sagas" => args.sagas = number("--sagas"),
            "--concurrency" => args.concurrency = number("--concurrency"),
            "--http" => args.http = true,
            "sqlite" | "postgres" | "all" => engine = a,
            other => panic!("unknown argument {other:?}"),
        }
    }
    println!(
        "{} three-step sagas, {} concurrent, steps {}",
        args.sagas,
        args.concurrency,
        if args.http { "over HTTP" } else { "in-process" }
    );
    if engine != "postgres" {
        let dir = tempfile::tempdir().unwrap();
        let saga_store = sqlite(&dir.path().join("sagas.db")).await;
        let raw_store = sqlite(&dir.path().join("raw.db")).await;
        report("sqlite", saga_store, raw_store, args).await;
    }
    if engine != "sqlite" {
        let (saga_store, saga_schema) = postgres("saga_bench").await;
        let (raw_store, raw_schema) = postgres("saga_bench_raw").await;
        report("postgres", saga_store.clone(), raw_store.clone(), args).await;
        drop_schema(&saga_store, &saga_schema).await;
        drop_schema(&raw_store, &raw_schema).await;
    }
}

async fn sqlite(path: &std::path::Path) -> Arc<flotilla_sqlite::eventstore::SqliteEventStore> {
    let db = flotilla_sqlite::Database::open(flotilla_sqlite::Options::new(path)).unwrap();
    Arc::new(
        flotilla_sqlite::eventstore::SqliteEventStore::open(db, None)
            .await
            .unwrap(),
    )
}

async fn postgres(prefix: &str) -> (Arc<flotilla_postgres::eventstore::PgEventStore>, String) {
    let url = std::env::var("FLOTILLA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("{prefix}_{}", std::process::id());
    let options = flotilla_postgres::Options {
        schema: schema.clone(),
        pool_size: 16,
        ..flotilla_postgres::Options::new(url)
    };
    let store = flotilla_postgres::eventstore::PgEventStore::open(&options)
        .await
        .expect("PostgreSQL answers at FLOTILLA_TEST_POSTGRES_URL");
    (Arc::new(store), schema)
}

async fn drop_schema(store: &flotilla_postgres::eventstore::PgEventStore, schema: &str) {
    let client = store.pool().get().await.unwrap();
    let sql = format!("DROP SCHEMA {schema} CASCADE");
    client.batch_execute(&sql).await.unwrap();
}

async fn report<S: EventStore + 'static, R: EventStore + 'static>(
    engine: &str,
    saga_store: Arc<S>,
    raw_store: Arc<R>,
    args: Args,
) {
    let (rate, p50, p99) = run_sagas(saga_store, args).await;
    let (raw_rate, raw_p99) = run_raw(raw_store, args).await;
    println!(
        "{engine}: sagas {rate:.0}/s (p50 {p50:.1} ms, p99 {p99:.1} ms); raw store, {EVENTS_PER_SAGA} \
         appends per stream: {raw_rate:.0} streams/s (p99 {raw_p99:.1} ms); ratio {:.2}",
        rate / raw_rate
    );
}

/// Sagas completed per second, and p50 / p99 of start-to-end latency in ms.
async fn run_sagas<S: EventStore + 'static>(store: Arc<S>, args: Args) -> (f64, f64, f64) {
    let orch = orchestrator(store, args.http).await;
    let started = Instant::now();
    let latencies = concurrently(args, move |i| {
        let orch = orch.clone();
        async move {
            let id = orch.start("bench", json!({ "n": i })).await.unwrap();
            let end = orch.wait(&id).await.unwrap();
            assert_eq!(end.status, SagaStatus::Completed, "{id}");
        }
    })
    .await;
    let rate = args.sagas as f64 / started.elapsed().as_secs_f64();
    (
        rate,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    )
}

/// Streams of `EVENTS_PER_SAGA` single-event appends per second, and p99 per stream in ms.
async fn run_raw<S: EventStore + 'static>(store: Arc<S>, args: Args) -> (f64, f64) {
    let started = Instant::now();
    let latencies = concurrently(args, move |i| {
        let store = store.clone();
        async move {
            let stream = StreamId::new(format!("raw-{i}")).unwrap();
            for v in 0..EVENTS_PER_SAGA as u64 {
                let expected = match v {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                };
                let event = NewEvent::new("StepSucceeded", json!({ "step": "s", "n": i }));
                store.append(&stream, expected, vec![event]).await.unwrap();
            }
        }
    })
    .await;
    let rate = args.sagas as f64 / started.elapsed().as_secs_f64();
    (rate, percentile(&latencies, 0.99))
}

/// Runs `job(0..sagas)` with `concurrency` jobs in flight; each job's latency in ms.
async fn concurrently<F, Fut>(args: Args, job: F) -> Vec<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= args.sagas {
                    return latencies;
                }
                let t = Instant::now();
                job(i).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut all = Vec::with_capacity(args.sagas);
    while let Some(l) = workers.join_next().await {
        all.extend(l.unwrap());
    }
    all.sort_by(f64::total_cmp);
    all
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

/// The bench saga: three steps, each with a compensation that never runs here.
async fn orchestrator<S: EventStore + 'static>(store: Arc<S>, http: bool) -> Orchestrator {
    let store: Arc<dyn EventStore> = store;
    let mut builder = Orchestrator::builder(store);
    let mut def = SagaDefinition::builder("bench", 1);
    for step in ["reserve", "charge", "confirm"] {
        let (action, undo) = if http {
            let service = ServiceName::new("participant").unwrap();
            (
                Action::http(service.clone(), http::Method::POST, "/steps", None),
                Action::http(service, http::Method::DELETE, "/steps", None),
            )
        } else {
            (Action::function(step), Action::function("undo"))
        };
        def = def.step(StepBuilder::new(step, action).compensate(undo));
        builder = builder.function(step, |call: StepCall| async move {
            Ok::<_, StepError>(json!({ "key": call.idempotency_key }))
        });
    }
    builder = builder.function("undo", |_call: StepCall| async {
        Ok::<_, StepError>(Value::Null)
    });
    if http {
        builder = builder.discovery(participant().await);
    }
    builder.saga(def.build().unwrap()).build().unwrap()
}

/// A participant answering every request with a small JSON body.
async fn participant() -> Arc<StaticDiscovery> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({ "ok": true })) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let discovery = Arc::new(StaticDiscovery::new());
    let name = ServiceName::new("participant").unwrap();
    let instance = ServiceInstance::new(name.clone(), "127.0.0.1", port);
    discovery.set_passing(&name, vec![instance]);
    discovery
}
