//! Embedded bus figures: durable publish throughput with concurrent publishers, and
//! publish-to-handler latency through the delivery engine. Run with `bench/bus/run.sh`.
//!
//! Every publish is `synchronous=FULL` durable when answered (the default); one consumer
//! group is declared so each event is also routed (a delivery row), as in real use.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_bus::{Backend, Bus, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Options};
use serde_json::json;
use tokio::sync::mpsc;

fn open_with(options: Options) -> (Arc<SqliteBus>, Database) {
    let db = Database::open(options).unwrap();
    let bus = Arc::new(SqliteBus::open(db.clone(), BusOptions::default()).unwrap());
    (bus, db)
}

async fn declare(bus: &SqliteBus, group: &str) {
    let spec = GroupSpec {
        name: GroupName::new(group).unwrap(),
        pattern: TopicPattern::new("bench.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
}

/// `BUS_MERGE=0` runs each publish in its own savepoint, as before publishes were merged:
/// the same binary measures both ways in one sitting.
fn merge_writes() -> bool {
    std::env::var("BUS_MERGE").map_or(true, |v| v != "0")
}

fn event(n: usize) -> Outgoing {
    let e = CloudEvent::new("/bench", "bench.created")
        .with_json(json!({ "n": n, "pad": "x".repeat(64) }));
    Outgoing::new(TopicName::new("bench.created").unwrap(), e)
}

/// `publishers` tasks each publish `per` events in batches of `batch`; answers events/s and
/// the mean number of publishes the writer gathered into one commit.
async fn throughput(publishers: usize, per: usize, batch: usize, gather: Duration) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path().join("bench.db"));
    options.gather_wait = gather;
    options.merge_writes = merge_writes();
    let (bus, db) = open_with(options);
    declare(&bus, "bench").await;
    let before = db.writer().stats();
    let start = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let bus = Arc::clone(&bus);
            tokio::spawn(async move {
                for chunk in 0..per / batch {
                    let base = p * per + chunk * batch;
                    let b: Vec<_> = (base..base + batch).map(event).collect();
                    bus.publish(b).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (publishers * per) as f64 / start.elapsed().as_secs_f64();
    let after = db.writer().stats();
    let per_commit =
        (after.writes - before.writes) as f64 / (after.batches - before.batches) as f64;
    (rate, per_commit)
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Publishes `total` single events at `rate`/s through the engine to a handler; answers the
/// publish-to-handler latencies (p50, p99) in microseconds.
async fn latency(total: usize, rate: u64, gather: Duration) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path().join("bench.db"));
    options.gather_wait = gather;
    options.merge_writes = merge_writes();
    let (backend, _) = open_with(options);
    let bus = Bus::new(backend);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("bench.*")
        .group("latency")
        .concurrency(32)
        .handler(move |r| {
            let sent = r
                .event
                .json_data()
                .and_then(|d| d["t"].as_u64())
                .unwrap_or(0);
            let _ = tx.send(micros_now().saturating_sub(sent));
            async { Ok(()) }
        })
        .await
        .unwrap();
    let gap = Duration::from_micros(1_000_000 / rate);
    let mut tick = tokio::time::interval(gap);
    for _ in 0..total {
        tick.tick().await;
        let bus = bus.clone();
        tokio::spawn(async move {
            let e =
                CloudEvent::new("/bench", "bench.latency").with_json(json!({ "t": micros_now() }));
            bus.publish(e).await.unwrap();
        });
    }
    let mut lat = Vec::with_capacity(total);
    while lat.len() < total {
        lat.push(rx.recv().await.unwrap());
    }
    sub.stop().await;
    lat.sort_unstable();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// Baseline: the same events (encoded the same way) inserted by bare rusqlite, one thread,
/// WAL with `synchronous=FULL`, one transaction per `batch`: the ceiling of storing them
/// durably in SQLite at all, with no routing, dedupe or delivery rows.
fn bare_sqlite(total: usize, batch: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut c = rusqlite::Connection::open(dir.path().join("bare.db")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute_batch("CREATE TABLE m (seq INTEGER PRIMARY KEY, topic TEXT, event TEXT)")
        .unwrap();
    let start = Instant::now();
    for chunk in 0..total / batch {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO m (topic, event) VALUES (?1, ?2)")
                .unwrap();
            for n in chunk * batch..(chunk + 1) * batch {
                let o = event(n);
                st.execute((o.topic.as_str(), o.event.to_json_value().to_string()))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let gather = Options::new("unused").gather_wait;
    // `gather=0` is the writer taking only what is already queued (before batches waited for
    // the previous batch's callers): the same workload, side by side in one run.
    let workloads = [
        (1, 1, gather),
        (64, 1, Duration::ZERO),
        (64, 1, gather),
        (256, 1, gather),
    ];
    let batched = [(8, 100, gather), (16, 500, gather)];
    // `BUS_BENCH=64x1,bare` runs only the named parts (workloads as publishers x batch, with
    // the default gathering; `bare`; `latency`), for quick A/B runs of one figure.
    let only = std::env::var("BUS_BENCH").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w.trim() == name))
    };
    for (publishers, batch, wait) in workloads.into_iter().chain(batched) {
        if only.is_some() && (wait != gather || !wanted(&format!("{publishers}x{batch}"))) {
            continue;
        }
        let per = if batch == 1 { 2_000 } else { 40_000 };
        let per = per.min(200_000 / publishers).max(batch);
        let (rate, gathered) = throughput(publishers, per, batch, wait).await;
        println!(
            "publish  publishers={publishers:<3} batch={batch:<4} gather={wait:?} \
             durable events/s={rate:.0} publishes/commit={gathered:.1}"
        );
    }
    if wanted("bare") {
        let bare = bare_sqlite(200_000, 500);
        println!(
            "baseline bare rusqlite, 1 thread, batch=500, synchronous=FULL events/s={bare:.0}"
        );
    }
    for wait in [Duration::ZERO, gather] {
        if !wanted("latency") {
            break;
        }
        let (p50, p99) = latency(5_000, 1_000, wait).await;
        println!(
            "latency  rate=1000/s events=5000 gather={wait:?} publish-to-handler p50={p50}us p99={p99}us"
        );
    }
}
