//! The side-by-side harness of the broker backends' benchmarks (`cargo bench -p
//! flotilla-{nats,amqp,redis} --bench broker`, run by `bench/bus-brokers/run.sh`): one
//! workload, the Flotilla side of every measurement, pacing and reporting. Each backend's
//! bench supplies only what is native to its broker: how its own client publishes a batch and
//! consumes a stream with the same durability.
//!
//! Workload: [`PUBLISHERS`] concurrent publishers send [`EVENTS`] events of about 200 bytes in
//! batches of [`BATCH`], two rounds in alternating order; then [`LATENCY_SAMPLES`] single
//! events, one every half millisecond, timed from publish to the consumer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed benchmark should stop loudly

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_core::{CloudEvent, TopicName};
use serde_json::Value;

use crate::{Backend, GroupName, GroupSpec, Outgoing};

/// Concurrent publishers in the throughput runs.
pub const PUBLISHERS: usize = 4;
/// Events per publish call in the throughput runs.
pub const BATCH: usize = 50;
/// Events per throughput run.
pub const EVENTS: usize = 20_000;
/// Single events timed from publish to handler.
pub const LATENCY_SAMPLES: usize = 2_000;

/// The instant every event's send time is measured from, shared by publisher and consumer.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    fn micros(self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Event `n`, stamped with its send time (`data.t`, µs since the start).
    pub fn event(self, n: usize) -> CloudEvent {
        CloudEvent::new("/bench", "bench.event")
            .with_json(serde_json::json!({"n": n, "t": self.micros()}))
    }

    /// Microseconds since the event whose `data` this is was made.
    pub fn latency_of_data(self, data: &Value) -> u64 {
        self.micros() - data["t"].as_u64().expect("a bench event's data has t")
    }

    /// As [`Stopwatch::latency_of_data`], for an event in structured JSON as sent on the wire.
    pub fn latency_of_wire(self, structured: &[u8]) -> u64 {
        let v: Value = serde_json::from_slice(structured).expect("a structured CloudEvent");
        self.latency_of_data(&v["data"])
    }
}

/// Declares group `name` on `pattern` and answers its name.
pub async fn declare(backend: &dyn Backend, name: &str, pattern: &str) -> GroupName {
    let spec = GroupSpec {
        name: GroupName::new(name).unwrap(),
        pattern: flotilla_core::TopicPattern::new(pattern).unwrap(),
    };
    backend.declare_group(&spec).await.unwrap();
    spec.name
}

/// Events/s of [`PUBLISHERS`] tasks each publishing its share of [`EVENTS`] through
/// `publish_batch`, which must return only when the batch is as durable as the comparison
/// requires.
pub async fn throughput<F, Fut>(publish_batch: F) -> f64
where
    F: Fn(Vec<CloudEvent>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let clock = Stopwatch::start();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publish_batch = publish_batch.clone();
            tokio::spawn(async move {
                for i in (0..EVENTS / PUBLISHERS).step_by(BATCH) {
                    let batch = (0..BATCH)
                        .map(|j| clock.event(p * EVENTS + i + j))
                        .collect();
                    publish_batch(batch).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

/// [`throughput`] through a Flotilla backend.
pub async fn flotilla_throughput(backend: Arc<dyn Backend>, topic: &TopicName) -> f64 {
    let topic = topic.clone();
    throughput(move |batch: Vec<CloudEvent>| {
        let (backend, topic) = (backend.clone(), topic.clone());
        async move {
            let batch = batch
                .into_iter()
                .map(|e| Outgoing::new(topic.clone(), e))
                .collect();
            backend.publish(batch).await.unwrap();
        }
    })
    .await
}

/// Publishes [`LATENCY_SAMPLES`] events stamped by `clock`, one every half millisecond.
pub async fn paced<F, Fut>(clock: Stopwatch, mut publish_one: F)
where
    F: FnMut(CloudEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    for n in 0..LATENCY_SAMPLES {
        publish_one(clock.event(n)).await;
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Publish-to-handler latencies (µs) through a Flotilla backend: a consumer on `group`
/// receiving up to 64 at a time and acking each, while [`paced`] publishes to `topic`.
pub async fn flotilla_latency(
    backend: Arc<dyn Backend>,
    topic: &TopicName,
    group: &GroupName,
) -> Vec<u64> {
    let clock = Stopwatch::start();
    let (b, g) = (backend.clone(), group.clone());
    let consumer = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        while lat.len() < LATENCY_SAMPLES {
            let got = b
                .receive(&g, 64, Duration::from_secs(30), Duration::from_secs(1))
                .await
                .unwrap();
            for d in got {
                lat.push(clock.latency_of_data(d.event.json_data().unwrap()));
                b.ack(&d.receipt).await.unwrap();
            }
        }
        lat
    });
    paced(clock, |e| {
        let b = backend.clone();
        let out = Outgoing::new(topic.clone(), e);
        async move {
            b.publish(vec![out]).await.unwrap();
        }
    })
    .await;
    consumer.await.unwrap()
}

/// Runs both publish measurements twice, in alternating order so neither always runs on a
/// warmer broker, and prints each round's figures and ratio.
pub async fn compare_publish<O, OF, N, NF>(
    broker: &str,
    native_name: &str,
    mut ours: O,
    mut native: N,
) where
    O: FnMut() -> OF,
    OF: Future<Output = f64>,
    N: FnMut() -> NF,
    NF: Future<Output = f64>,
{
    for round in 0..2 {
        let (o, n) = if round == 0 {
            let o = ours().await;
            (o, native().await)
        } else {
            let n = native().await;
            (ours().await, n)
        };
        println!(
            "{broker:<6} publish flotilla {o:>9.0} ev/s  {native_name:<10} {n:>9.0} ev/s  ratio {:.3}",
            o / n
        );
    }
}

/// Prints p50 and p99 of both latency samples and their ratios.
pub fn compare_latency(broker: &str, ours: Vec<u64>, native_name: &str, native: Vec<u64>) {
    let (f50, f99) = report("flotilla", ours);
    let (n50, n99) = report(native_name, native);
    println!(
        "{broker} latency ratio p50 {:.3}  p99 {:.3}",
        f50 / n50,
        f99 / n99
    );
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
