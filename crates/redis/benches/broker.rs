//! Flotilla's Redis Streams backend vs the redis crate on the same workload and durability
//! (in memory; this server keeps nothing on disk): publish throughput with 4 concurrent
//! publishers sending batches of 50 (native: pipelined XADDs), and publish-to-handler latency
//! of single events (native: XADD, XREADGROUP BLOCK, XACK). Run by `bench/bus-brokers/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_redis::{Options, RedisBackend};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};

const PUBLISHERS: usize = 4;
const BATCH: usize = 50;
const EVENTS: usize = 20_000;
const LATENCY_SAMPLES: usize = 2_000;

fn event(n: usize, base: Instant) -> CloudEvent {
    let us = base.elapsed().as_micros() as u64;
    CloudEvent::new("/bench", "bench.event").with_json(serde_json::json!({"n": n, "t": us}))
}

fn report(name: &str, mut lat: Vec<u64>) -> (f64, f64) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "{name:<10} latency p50 {:>8.3} ms  p99 {:>8.3} ms",
        p(0.5),
        p(0.99)
    );
    (p(0.5), p(0.99))
}

async fn flotilla_throughput(b: &Arc<RedisBackend>, topic: &TopicName) -> f64 {
    let base = Instant::now();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (b, topic) = (b.clone(), topic.clone());
            tokio::spawn(async move {
                for i in (0..EVENTS / PUBLISHERS).step_by(BATCH) {
                    let batch = (0..BATCH)
                        .map(|j| Outgoing::new(topic.clone(), event(p * EVENTS + i + j, base)))
                        .collect();
                    b.publish(batch).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

async fn native_throughput(conn: &MultiplexedConnection, key: &str) -> f64 {
    let base = Instant::now();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (mut conn, key) = (conn.clone(), key.to_owned());
            tokio::spawn(async move {
                for i in (0..EVENTS / PUBLISHERS).step_by(BATCH) {
                    let mut pipe = redis::pipe();
                    for j in 0..BATCH {
                        let e = event(p * EVENTS + i + j, base).to_json_value().to_string();
                        pipe.xadd(&key, "*", &[("t", "bench.events"), ("e", e.as_str())]);
                    }
                    let _: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

async fn flotilla_latency(b: &Arc<RedisBackend>, topic: &TopicName, g: &GroupName) -> Vec<u64> {
    let base = Instant::now();
    let (b2, g2) = (b.clone(), g.clone());
    let consumer = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        while lat.len() < LATENCY_SAMPLES {
            let got = b2
                .receive(&g2, 64, Duration::from_secs(30), Duration::from_secs(1))
                .await
                .unwrap();
            for d in got {
                let t = d.event.json_data().unwrap()["t"].as_u64().unwrap();
                lat.push(base.elapsed().as_micros() as u64 - t);
                b2.ack(&d.receipt).await.unwrap();
            }
        }
        lat
    });
    for n in 0..LATENCY_SAMPLES {
        b.publish(vec![Outgoing::new(topic.clone(), event(n, base))])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    consumer.await.unwrap()
}

async fn native_latency(client: &redis::Client, key: &str) -> Vec<u64> {
    let base = Instant::now();
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
                    let v: serde_json::Value = serde_json::from_str(&e).unwrap();
                    lat.push(base.elapsed().as_micros() as u64 - v["data"]["t"].as_u64().unwrap());
                    let _: i64 = redis::AsyncCommands::xack(&mut reader, &key2, "g", &[&id.id])
                        .await
                        .unwrap();
                }
            }
        }
        lat
    });
    for n in 0..LATENCY_SAMPLES {
        let e = event(n, base).to_json_value().to_string();
        let _: String = redis::AsyncCommands::xadd(
            &mut conn,
            key,
            "*",
            &[("t", "bench.latency"), ("e", e.as_str())],
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    consumer.await.unwrap()
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
    let b = Arc::new(RedisBackend::connect(opts).await.expect("Redis answers"));
    let topic = TopicName::new("bench.events").unwrap();
    let g = GroupName::new("bench").unwrap();
    let thr = GroupName::new("bench-all").unwrap();
    // One group receives the throughput events, as the native stream holds them.
    for (name, pattern) in [(&g, "bench.latency"), (&thr, "bench.events")] {
        let spec = GroupSpec {
            name: name.clone(),
            pattern: TopicPattern::new(pattern).unwrap(),
        };
        b.declare_group(&spec).await.unwrap();
    }
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let native_key = format!("{prefix}_native");

    for round in 0..2 {
        let (ours, native) = if round == 0 {
            let o = flotilla_throughput(&b, &topic).await;
            (o, native_throughput(&conn, &native_key).await)
        } else {
            let n = native_throughput(&conn, &native_key).await;
            (flotilla_throughput(&b, &topic).await, n)
        };
        println!(
            "redis publish flotilla {ours:>9.0} ev/s  redis-rs   {native:>9.0} ev/s  ratio {:.3}",
            ours / native
        );
    }
    let lt = TopicName::new("bench.latency").unwrap();
    let (f50, f99) = report("flotilla", flotilla_latency(&b, &lt, &g).await);
    let (n50, n99) = report(
        "redis-rs",
        native_latency(&client, &format!("{native_key}_lat")).await,
    );
    println!(
        "redis latency ratio p50 {:.3}  p99 {:.3}",
        f50 / n50,
        f99 / n99
    );

    b.delete_group(&g).await.unwrap();
    b.delete_group(&thr).await.unwrap();
    let mut conn = conn;
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, format!("{prefix}*"))
        .await
        .unwrap();
    for k in keys {
        let _: i64 = redis::AsyncCommands::del(&mut conn, k).await.unwrap();
    }
}
