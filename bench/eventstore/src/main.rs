//! Event store throughput: appends (one stream sequential, 1,000 streams concurrent, batched),
//! reads and subscriptions, on SQLite and PostgreSQL, each next to plain SQL doing the same
//! inserts and selects on the same engine in the same run.
//!
//! `cargo run --release -- [sqlite|postgres|all] [--quick]` (`postgres --concurrent N`: only the
//! 1,000-stream concurrent appends, store and plain SQL in turn, N rounds); PostgreSQL is taken from
//! `FLOTILLA_TEST_POSTGRES_URL` (default `postgres://root@127.0.0.1:5432/test`), in a schema
//! created for the run and dropped after it.

mod pg;
mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use flotilla_core::StreamId;
use flotilla_eventstore::{EventStore, ExpectedVersion, Filter, NewEvent, ReadAll, subscribe_all};
use serde_json::json;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Sequential single-event appends to one stream.
    pub sequential: usize,
    /// Concurrent streams, each appending `per_stream` single events.
    pub streams: usize,
    /// Events per stream in the concurrent run.
    pub per_stream: usize,
    /// Batched appends: tasks x batches x events per batch.
    pub batch_tasks: usize,
    /// Batches each task appends.
    pub batches: usize,
    /// Events per batch.
    pub batch: usize,
}

/// One measured line: what, how many, how long, and the baseline's rate.
pub struct Row {
    /// What was measured.
    pub what: &'static str,
    /// Operations per second of the event store.
    pub store: f64,
    /// Operations per second of plain SQL.
    pub plain: f64,
}

/// Runs `f`, returning operations per second for `ops` operations.
pub async fn rate<F: Future<Output = ()>>(ops: usize, f: F) -> f64 {
    let start = Instant::now();
    f.await;
    ops as f64 / start.elapsed().as_secs_f64()
}

fn event(i: usize) -> NewEvent {
    NewEvent::new("Benchmarked", json!({ "i": i, "note": "a small payload of some forty bytes" }))
}

fn sid(s: String) -> StreamId {
    StreamId::new(s).expect("benchmark stream ids are valid")
}

/// Single-event appends to one stream, one after another.
pub async fn sequential(store: &Arc<dyn EventStore>, n: usize) -> f64 {
    let s = sid("seq-1".into());
    rate(n, async {
        for i in 0..n {
            store.append(&s, ExpectedVersion::Exact(i as u64), vec![event(i)]).await.expect("append");
        }
    })
    .await
}

/// `streams` tasks each appending `per` single events to their own stream, concurrently.
pub async fn concurrent(store: &Arc<dyn EventStore>, streams: usize, per: usize) -> f64 {
    concurrent_named(store, "con", streams, per).await
}

/// [`concurrent`] on streams `{prefix}-{n}`.
pub async fn concurrent_named(store: &Arc<dyn EventStore>, prefix: &str, streams: usize, per: usize) -> f64 {
    rate(streams * per, async {
        let tasks: Vec<_> = (0..streams)
            .map(|t| {
                let store = store.clone();
                let s = sid(format!("{prefix}-{t}"));
                tokio::spawn(async move {
                    for i in 0..per {
                        let ev = vec![event(i)];
                        store.append(&s, ExpectedVersion::Exact(i as u64), ev).await.expect("append");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("append task");
        }
    })
    .await
}

/// Batched appends: events per second.
pub async fn batched(store: &Arc<dyn EventStore>, sizes: Sizes) -> f64 {
    let total = sizes.batch_tasks * sizes.batches * sizes.batch;
    rate(total, async {
        let tasks: Vec<_> = (0..sizes.batch_tasks)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let s = sid(format!("bat-{t}"));
                    for _ in 0..sizes.batches {
                        let evs = (0..sizes.batch).map(event).collect();
                        store.append(&s, ExpectedVersion::Any, evs).await.expect("append");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("batch task");
        }
    })
    .await
}

/// Reads all of `$all` in pages of 1,000: events per second.
pub async fn read_all(store: &Arc<dyn EventStore>) -> (usize, f64) {
    let start = Instant::now();
    let (mut after, mut n) = (0, 0);
    loop {
        let page = store.read_all(ReadAll::after(after, 1000)).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        n += page.len();
    }
    (n, n as f64 / start.elapsed().as_secs_f64())
}

/// A subscription from the start over `n` stored events: events per second.
pub async fn subscription(store: &Arc<dyn EventStore>, n: usize) -> f64 {
    let mut sub = subscribe_all(store.clone(), 0, Filter::All);
    rate(n, async {
        for _ in 0..n {
            sub.next().await.expect("subscription open").expect("event");
        }
    })
    .await
}

fn print(engine: &str, rows: &[Row]) {
    println!("\n{engine}");
    println!("| measurement | event store | plain SQL | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        let ratio = if r.plain > 0.0 { r.store / r.plain } else { f64::NAN };
        println!("| {} | {:.0}/s | {:.0}/s | {:.2} |", r.what, r.store, r.plain, ratio);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let which = args.iter().find(|a| !a.starts_with("--")).map_or("all", String::as_str);
    let sizes = if quick {
        Sizes { sequential: 200, streams: 1000, per_stream: 2, batch_tasks: 4, batches: 10, batch: 100 }
    } else {
        Sizes { sequential: 2000, streams: 1000, per_stream: 20, batch_tasks: 8, batches: 50, batch: 100 }
    };
    println!("sizes: {sizes:?}");
    if which == "sqlite" || which == "all" {
        print("SQLite (WAL, synchronous=FULL, group commit)", &sqlite::run(sizes).await);
    }
    if which == "postgres" || which == "all" {
        let sizes = Sizes {
            sequential: sizes.sequential / 2,
            per_stream: (sizes.per_stream / 4).max(1),
            ..sizes
        };
        // `--concurrent N`: only the concurrent appends, N rounds (store, then plain, in turn).
        let rounds = args
            .iter()
            .position(|a| a == "--concurrent")
            .map(|i| args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(3));
        match pg::run(sizes, rounds).await {
            Some(rows) => print("PostgreSQL 15 (pool of 16)", &rows),
            None => println!("\nPostgreSQL: SKIPPED, no server"),
        }
    }
}
