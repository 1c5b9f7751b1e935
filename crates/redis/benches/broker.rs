//! Flotilla's Redis Streams backend vs the redis crate on the same workload and durability
//! (in memory; this server keeps nothing on disk): publish throughput (native: pipelined
//! XADDs; and a second native side deduping as the bus does, `SET NX PX` then `XADD`) and
//! publish-to-handler latency of single events (native: XADD, XREADGROUP BLOCK,
//! XACK). Publish runs six rounds of the three sides, rotating which runs first, and reports
//! medians. The workload and the Flotilla side are `flotilla_bus::bench`'s. Run by
//! `bench/bus-brokers/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::Backend;
use flotilla_bus::bench::{self, LATENCY_SAMPLES, Stopwatch};
use flotilla_core::{CloudEvent, TopicName};
use flotilla_redis::{Options, RedisBackend};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};

async fn native_throughput(conn: &MultiplexedConnection, key: &str) -> f64 {
    let (conn, key) = (conn.clone(), key.to_owned());
    bench::throughput(move |batch: Vec<CloudEvent>| {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            let mut pipe = redis::pipe();
            for e in batch {
                let e = e.to_json_value().to_string();
                pipe.xadd(&key, "*", &[("t", "bench.events"), ("e", e.as_str())]);
            }
            let _: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
        }
    })
    .await
}

/// The native client doing the dedupe the bus does: `SET <source id> NX PX <window>` for
/// every event of a batch in one pipeline, then one pipeline of `XADD`s for those not seen.
async fn native_dedupe_throughput(conn: &MultiplexedConnection, key: &str) -> f64 {
    let window = Options::default().dedupe_window.as_millis() as u64;
    let (conn, key) = (conn.clone(), key.to_owned());
    bench::throughput(move |batch: Vec<CloudEvent>| {
        let (mut conn, key) = (conn.clone(), key.clone());
        async move {
            let mut seen = redis::pipe();
            for e in &batch {
                let dedupe = format!("{key}:dd:{} {}", e.source, e.id);
                seen.cmd("SET")
                    .arg(dedupe)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(window);
            }
            let fresh: Vec<Option<String>> = seen.query_async(&mut conn).await.unwrap();
            let mut pipe = redis::pipe();
            for (e, _) in batch.iter().zip(fresh).filter(|(_, f)| f.is_some()) {
                let e = e.to_json_value().to_string();
                pipe.xadd(&key, "*", &[("t", "bench.events"), ("e", e.as_str())]);
            }
            let _: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
        }
    })
    .await
}

async fn native_latency(client: &redis::Client, key: &str) -> Vec<u64> {
    let clock = Stopwatch::start();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut reader = client.get_multiplexed_async_connection().await.unwrap();
    reader.set_response_timeout(Duration::from_secs(5));
    let key2 = key.to_owned();
    let consumer = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        let opts = StreamReadOptions::default()
            .group("g", "c")
            .count(64)
            .block(1000);
        while lat.len() < LATENCY_SAMPLES {
            let r: StreamReadReply =
                redis::AsyncCommands::xread_options(&mut reader, &[&key2], &[">"], &opts)
                    .await
                    .unwrap();
            for k in r.keys {
                for id in k.ids {
                    let e: String = id.get("e").unwrap();
                    lat.push(clock.latency_of_wire(e.as_bytes()));
                    let _: i64 = redis::AsyncCommands::xack(&mut reader, &key2, "g", &[&id.id])
                        .await
                        .unwrap();
                }
            }
        }
        lat
    });
    bench::paced(clock, |e| {
        let mut conn = conn.clone();
        async move {
            let e = e.to_json_value().to_string();
            let _: String = redis::AsyncCommands::xadd(
                &mut conn,
                key,
                "*",
                &[("t", "bench.latency"), ("e", e.as_str())],
            )
            .await
            .unwrap();
        }
    })
    .await;
    consumer.await.unwrap()
}

/// A publish measurement: its name and one run of it (events/s).
type Side = (
    &'static str,
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = f64> + Send>>>,
);

/// Publish rounds per side (`FLOTILLA_BENCH_ROUNDS` overrides). Each round runs every side
/// once, the order rotated by one side a round, so over six rounds each of the three sides
/// runs first, second and last twice.
fn rounds() -> usize {
    std::env::var("FLOTILLA_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n % 2 {
        1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs [`rounds`] rounds of every side and prints each round, then each side's median rate
/// and the median of the per-round ratios of the first side to each other side, so neither
/// the order of the sides nor one disturbed round decides the result.
async fn compare_publish_rounds(sides: &[Side]) {
    let rounds = rounds();
    let mut rates = vec![Vec::new(); sides.len()];
    for round in 0..rounds {
        let mut line = format!("redis  publish round {round}:");
        let mut got = vec![0.0; sides.len()];
        for k in 0..sides.len() {
            let i = (round + k) % sides.len();
            got[i] = (sides[i].1)().await;
        }
        for (i, (name, _)) in sides.iter().enumerate() {
            line += &format!("  {name} {:>7.0}", got[i]);
            rates[i].push(got[i]);
        }
        println!("{line} ev/s (first: {})", sides[round % sides.len()].0);
    }
    let (ours, _) = &sides[0];
    let mut line = format!(
        "redis  publish median of {rounds}:  {ours} {:.0}",
        median(rates[0].clone())
    );
    for (i, (name, _)) in sides.iter().enumerate().skip(1) {
        let ratios = rates[0].iter().zip(&rates[i]).map(|(o, n)| o / n).collect();
        line += &format!(
            "  {name} {:.0} (ratio {:.3})",
            median(rates[i].clone()),
            median(ratios)
        );
    }
    println!("{line}");
}

#[tokio::main]
async fn main() {
    let url = std::env::var("FLOTILLA_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = format!("flotilla_bench_{}", std::process::id());
    let opts = Options {
        url: url.clone(),
        prefix: prefix.clone(),
        ..Options::default()
    };
    let b: Arc<dyn Backend> = Arc::new(RedisBackend::connect(opts).await.expect("Redis answers"));
    let topic = TopicName::new("bench.events").unwrap();
    // One group receives the throughput events, as the native stream holds them.
    let g = bench::declare(b.as_ref(), "bench", "bench.latency").await;
    let thr = bench::declare(b.as_ref(), "bench-all", "bench.events").await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let native_key = format!("{prefix}_native");

    let dedupe_key = format!("{native_key}_dd");
    let sides: Vec<Side> = vec![
        ("flotilla", {
            let (b, topic) = (b.clone(), topic.clone());
            Box::new(move || {
                let (b, topic) = (b.clone(), topic.clone());
                Box::pin(async move { bench::flotilla_throughput(b, &topic).await })
            })
        }),
        ("redis-rs", {
            let (conn, key) = (conn.clone(), native_key.clone());
            Box::new(move || {
                let (conn, key) = (conn.clone(), key.clone());
                Box::pin(async move { native_throughput(&conn, &key).await })
            })
        }),
        ("+dedupe", {
            let (conn, key) = (conn.clone(), dedupe_key.clone());
            Box::new(move || {
                let (conn, key) = (conn.clone(), key.clone());
                Box::pin(async move { native_dedupe_throughput(&conn, &key).await })
            })
        }),
    ];
    compare_publish_rounds(&sides).await;
    let lt = TopicName::new("bench.latency").unwrap();
    let ours = bench::flotilla_latency(b.clone(), &lt, &g).await;
    let native = native_latency(&client, &format!("{native_key}_lat")).await;
    bench::compare_latency("redis", ours, "redis-rs", native);

    b.delete_group(&g).await.unwrap();
    b.delete_group(&thr).await.unwrap();
    // Six rounds leave some 10^5 dedupe keys of the native side.
    conn.set_response_timeout(Duration::from_secs(60));
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, format!("{prefix}*"))
        .await
        .unwrap();
    for slice in keys.chunks(1000) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(slice)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
