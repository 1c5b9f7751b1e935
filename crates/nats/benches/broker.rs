//! Flotilla's JetStream backend vs async-nats on the same workload and durability (file
//! stream, publish acks awaited, acks confirmed by the server): publish throughput with 4
//! concurrent publishers sending batches of 50, and publish-to-handler latency of single
//! events. Run by `bench/bus-brokers/run.sh`; results in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_nats::{NatsBackend, Options};
use futures_util::StreamExt;

const PUBLISHERS: usize = 4;
const BATCH: usize = 50;
const EVENTS: usize = 20_000;
const LATENCY_SAMPLES: usize = 2_000;

fn event(n: usize, base: Instant) -> CloudEvent {
    let us = base.elapsed().as_micros() as u64;
    CloudEvent::new("/bench", "bench.event").with_json(serde_json::json!({"n": n, "t": us}))
}

fn stamp(body: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["data"]["t"].as_u64().unwrap()
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

async fn flotilla_throughput(b: &Arc<NatsBackend>, topic: &TopicName) -> f64 {
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

async fn native_throughput(js: &jetstream::Context, subject: &str) -> f64 {
    let base = Instant::now();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (js, subject) = (js.clone(), subject.to_owned());
            tokio::spawn(async move {
                for i in (0..EVENTS / PUBLISHERS).step_by(BATCH) {
                    let mut acks = Vec::with_capacity(BATCH);
                    for j in 0..BATCH {
                        let e = event(p * EVENTS + i + j, base);
                        let mut h = HeaderMap::new();
                        h.insert("Nats-Msg-Id", format!("{} {}", e.source, e.id).as_str());
                        let body = e.to_json_value().to_string();
                        acks.push(
                            js.publish_with_headers(subject.clone(), h, body.into())
                                .await
                                .unwrap(),
                        );
                    }
                    for a in acks {
                        a.await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

async fn flotilla_latency(b: &Arc<NatsBackend>, topic: &TopicName, g: &GroupName) -> Vec<u64> {
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

async fn native_latency(js: &jetstream::Context, s: &stream::Stream, subject: &str) -> Vec<u64> {
    let base = Instant::now();
    let config = consumer::pull::Config {
        durable_name: Some("native".into()),
        filter_subject: subject.to_owned(),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    let c: consumer::PullConsumer = s.create_consumer(config).await.unwrap();
    let consumer = tokio::spawn(async move {
        let mut msgs = c.messages().await.unwrap();
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        while lat.len() < LATENCY_SAMPLES {
            let m = msgs.next().await.unwrap().unwrap();
            lat.push(base.elapsed().as_micros() as u64 - stamp(&m.payload));
            m.double_ack().await.unwrap();
        }
        lat
    });
    for n in 0..LATENCY_SAMPLES {
        let e = event(n, base);
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{} {}", e.source, e.id).as_str());
        let body = e.to_json_value().to_string();
        js.publish_with_headers(subject.to_owned(), h, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    consumer.await.unwrap()
}

#[tokio::main]
async fn main() {
    let url = std::env::var("FLOTILLA_TEST_NATS_URL").unwrap_or("nats://127.0.0.1:4222".into());
    let prefix = format!("flotilla_bench_{}", std::process::id());
    let opts = Options {
        url: url.clone(),
        prefix: prefix.clone(),
        ..Options::default()
    };
    let b = Arc::new(NatsBackend::connect(opts).await.expect("NATS answers"));
    let topic = TopicName::new("bench.events").unwrap();
    let g = GroupName::new("bench").unwrap();
    let spec = GroupSpec {
        name: g.clone(),
        pattern: TopicPattern::new("bench.latency").unwrap(),
    };
    b.declare_group(&spec).await.unwrap();

    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client);
    let native_name = format!("{prefix}_native");
    let s = js
        .create_stream(stream::Config {
            name: native_name.clone(),
            subjects: vec![format!("{native_name}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();

    // Two rounds in alternating order, so neither side always runs on a warmer broker.
    for round in 0..2 {
        let (ours, native) = if round == 0 {
            let o = flotilla_throughput(&b, &topic).await;
            (
                o,
                native_throughput(&js, &format!("{native_name}.events")).await,
            )
        } else {
            let n = native_throughput(&js, &format!("{native_name}.events")).await;
            (flotilla_throughput(&b, &topic).await, n)
        };
        println!(
            "nats publish  flotilla {ours:>9.0} ev/s  async-nats {native:>9.0} ev/s  ratio {:.3}",
            ours / native
        );
    }
    let lt = TopicName::new("bench.latency").unwrap();
    let (f50, f99) = report("flotilla", flotilla_latency(&b, &lt, &g).await);
    let (n50, n99) = report(
        "async-nats",
        native_latency(&js, &s, &format!("{native_name}.latency")).await,
    );
    println!(
        "nats latency ratio p50 {:.3}  p99 {:.3}",
        f50 / n50,
        f99 / n99
    );

    js.delete_stream(&native_name).await.unwrap();
    b.destroy().await.unwrap();
}
