//! Registry catalog on PostgreSQL (two replicas sharing it) against SQLite (one registry), in
//! the same run (`bench/registry/replicas.sh [N]`):
//!
//! - write latency: `Registry::register` of a changed instance, until it returns (durable);
//! - watch-wake latency: from the start of that write to a watcher waking with it — on
//!   PostgreSQL a watcher on the *other* replica, on SQLite one on the same registry (a single
//!   node has no other).
//!
//! Writes are sequential (one in flight), so this is latency, not throughput. PostgreSQL is
//! found as the tests find it (`flotilla-testkit`); the run stops if none answers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::Discovery;
use flotilla_discovery::catalog::CatalogStore;
use flotilla_registry::{Options, Registration, Registry};
use tokio_util::sync::CancellationToken;

fn bench_service() -> ServiceName {
    ServiceName::new("bench").unwrap()
}

/// A registry over `store`, running (following, leasing, checking) until `stop`.
async fn start(store: Arc<dyn CatalogStore>, stop: &CancellationToken) -> Registry {
    let r = Registry::new(Options::default(), store).await.unwrap();
    let (runner, token) = (r.clone(), stop.clone());
    tokio::spawn(async move { runner.run(token).await });
    r
}

/// Write and wake latencies of `n` changes written on `writer` and watched on `watcher`.
async fn measure(
    writer: &Registry,
    watcher: &Registry,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut writes, mut wakes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut rx = watcher.watch(&bench_service());
    for i in 0..n + 10 {
        let mut instance = ServiceInstance::new(bench_service(), "10.0.0.1", 8080);
        instance.id = "bench-1".into();
        instance.version = format!("1.0.{i}");
        rx.borrow_and_update();
        let started = Instant::now();
        let record = writer.register(Registration::new(instance)).await.unwrap();
        let wrote = started.elapsed();
        // Keep no `watch::Ref` alive past the wait: it would block the next write.
        let woke = rx
            .wait_for(|set| set.revision >= record.modify_index)
            .await
            .is_ok();
        assert!(woke, "the watcher's registry stopped");
        let waking = started.elapsed();
        if i >= 10 {
            // The first ten warm connections and caches up.
            writes.push(wrote);
            wakes.push(waking);
        }
    }
    (writes, wakes)
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99))
    )
}

fn median(samples: &[Duration]) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2].as_secs_f64()
}

async fn sqlite(n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let db = flotilla_sqlite::Database::open(flotilla_sqlite::Options::new(
        dir.path().join("catalog.db"),
    ))
    .unwrap();
    let store = flotilla_sqlite::catalog::SqliteCatalog::open(db).unwrap();
    let stop = CancellationToken::new();
    let r = start(Arc::new(store), &stop).await;
    let out = measure(&r, &r, n).await;
    stop.cancel();
    out
}

async fn postgres(url: String, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let options = flotilla_postgres::Options {
        schema: flotilla_testkit::unique_name("bench_reg"),
        pool_size: 4,
        ..flotilla_postgres::Options::new(url)
    };
    let open = || async {
        flotilla_postgres::catalog::PgCatalog::open(&options)
            .await
            .unwrap()
    };
    let (a_store, b_store) = (open().await, open().await);
    let pool = a_store.pool().clone();
    let stop = CancellationToken::new();
    let a = start(Arc::new(a_store), &stop).await;
    let b = start(Arc::new(b_store), &stop).await;
    let out = measure(&a, &b, n).await;
    stop.cancel();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", options.schema))
        .await
        .unwrap();
    out
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n = args.first().and_then(|v| v.parse().ok()).unwrap_or(500);
    let Some(url) = flotilla_testkit::backend(flotilla_testkit::Backend::Postgres, "replica bench")
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sq_writes, sq_wakes) = rt.block_on(sqlite(n));
    let (pg_writes, pg_wakes) = rt.block_on(postgres(url, n));
    println!(
        "| measurement ({n} sequential changes) | SQLite, one registry | PostgreSQL, two replicas | PostgreSQL / SQLite (p50) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| write latency (`register` of a changed instance) | {} | {} | {:.2}x |",
        summary(sq_writes.clone()),
        summary(pg_writes.clone()),
        median(&pg_writes) / median(&sq_writes)
    );
    println!(
        "| write start to watcher woken (PostgreSQL: watcher on the other replica) | {} | {} | {:.2}x |",
        summary(sq_wakes.clone()),
        summary(pg_wakes.clone()),
        median(&pg_wakes) / median(&sq_wakes)
    );
}
