//! The platform bus against the same workload in process, same run: publish throughput
//! (concurrent single-event publishes, which the platform backend gathers into requests, and
//! batches), consume throughput through the delivery engine (pulls, and acks gathered into
//! requests), and publish-to-handler latency through the engine at 1,000 events/s.
//! Run with `bench/platform-bus/run.sh`; figures in docs/BENCHMARKS.md.
//!
//! In process: a `SqliteBus` on its own database. Remote: a `PlatformBus` talking HTTP/1.1 on
//! loopback to a control plane (the broker's routes over another `SqliteBus`) that runs on
//! its own runtime, as `flotilla up` would in its own process. Every publish is durable when
//! answered on both sides (`synchronous=FULL`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed benchmark should stop loudly

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_bus::{Backend, Bus, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::{ConnectOptions, ControlPlane};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Options};
use serde_json::json;
use tokio::sync::mpsc;

/// Starts a control plane on a runtime of its own thread; answers its URL.
fn control_plane() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cp = common::ControlPlane::start().await;
            tx.send(cp.url()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn in_process(dir: &std::path::Path) -> Arc<dyn Backend> {
    let db = Database::open(Options::new(dir.join("bench.db"))).unwrap();
    Arc::new(SqliteBus::open(db, BusOptions::default()).unwrap())
}

fn remote(url: &str) -> Arc<dyn Backend> {
    Arc::new(PlatformBus::new(
        ControlPlane::new(ConnectOptions::new(url)).unwrap(),
    ))
}

async fn declare(bus: &dyn Backend, group: &str) {
    let spec = GroupSpec {
        name: GroupName::new(group).unwrap(),
        pattern: TopicPattern::new("bench.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
}

fn event(run: &str, n: usize) -> Outgoing {
    let e = CloudEvent::new(format!("/bench/{run}"), "bench.created")
        .with_json(json!({ "n": n, "pad": "x".repeat(64) }));
    Outgoing::new(TopicName::new("bench.created").unwrap(), e)
}

/// `publishers` tasks each publish `per` events in batches of `batch`; answers events/s.
async fn throughput(
    bus: Arc<dyn Backend>,
    run: &str,
    publishers: usize,
    per: usize,
    batch: usize,
) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (bus, run) = (Arc::clone(&bus), run.to_owned());
            tokio::spawn(async move {
                for chunk in 0..per / batch {
                    let base = p * per + chunk * batch;
                    let b: Vec<_> = (base..base + batch).map(|n| event(&run, n)).collect();
                    bus.publish(b).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (publishers * per) as f64 / start.elapsed().as_secs_f64()
}

/// Publishes `total` events to a fresh group, then answers how many per second the engine
/// hands to a handler (and acks) with `concurrency` handlers.
async fn consume(backend: Arc<dyn Backend>, group: &str, total: usize, concurrency: usize) -> f64 {
    declare(backend.as_ref(), group).await;
    for chunk in 0..total / 500 {
        let b = (chunk * 500..(chunk + 1) * 500)
            .map(|n| event(group, n))
            .collect();
        backend.publish(b).await.unwrap();
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let sub = Bus::new(backend)
        .subscribe("bench.*")
        .group(group)
        .concurrency(concurrency)
        .handler(move |_| {
            let _ = tx.send(());
            async { Ok(()) }
        })
        .await
        .unwrap();
    for _ in 0..total {
        rx.recv().await.unwrap();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    sub.stop().await;
    rate
}

fn micros_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// Publishes `total` single events at `rate`/s through the engine to a handler; answers the
/// publish-to-handler latencies (p50, p99) in microseconds.
async fn latency(backend: Arc<dyn Backend>, group: &str, total: usize, rate: u64) -> (u64, u64) {
    let bus = Bus::new(backend);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe("bench.*")
        .group(group)
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
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let local = in_process(dir.path());
    let platform = remote(&control_plane());
    for b in [&local, &platform] {
        declare(b.as_ref(), "bench").await;
    }
    println!("publish throughput (events/s, durable when answered)");
    for (publishers, per, batch) in [(64, 200, 1), (256, 50, 1), (16, 2_000, 100)] {
        for round in 0..2 {
            let run = format!("{publishers}x{batch}r{round}");
            let l = throughput(Arc::clone(&local), &run, publishers, per, batch).await;
            let r = throughput(Arc::clone(&platform), &run, publishers, per, batch).await;
            println!(
                "  {publishers:>3} publishers x batch {batch:>3}: in-process {l:>8.0}  platform {r:>8.0}  ratio {:.2}",
                r / l
            );
        }
    }
    println!("consume throughput through the engine, 64 handlers (events/s, each acked)");
    for round in 0..2 {
        let l = consume(Arc::clone(&local), &format!("drain-l{round}"), 10_000, 64).await;
        let r = consume(
            Arc::clone(&platform),
            &format!("drain-p{round}"),
            10_000,
            64,
        )
        .await;
        println!(
            "  in-process {l:>8.0}  platform {r:>8.0}  ratio {:.2}",
            r / l
        );
    }
    println!("publish-to-handler latency at 1,000 events/s through the engine (p50 / p99)");
    for (name, b) in [("in-process", &local), ("platform", &platform)] {
        let (p50, p99) = latency(Arc::clone(b), &format!("lat-{name}"), 5_000, 1_000).await;
        println!(
            "  {name:<10} {:.2} / {:.2} ms",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
    }
}
