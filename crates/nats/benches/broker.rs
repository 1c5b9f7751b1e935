//! Flotilla's JetStream backend vs async-nats on the same workload and durability (file
//! stream, publish acks awaited, `Nats-Msg-Id` set, acks confirmed by the server): publish
//! throughput and publish-to-handler latency of single events. The workload and the Flotilla
//! side are `flotilla_bus::bench`'s. Run by `bench/bus-brokers/run.sh`; results in
//! docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use flotilla_bus::Backend;
use flotilla_bus::bench::{self, LATENCY_SAMPLES, Stopwatch};
use flotilla_core::{CloudEvent, TopicName};
use flotilla_nats::{NatsBackend, Options};
use futures_util::StreamExt;

/// Publishes `e` with the dedupe header Flotilla sets, returning the pending server ack.
async fn send(
    js: &jetstream::Context,
    subject: &str,
    e: &CloudEvent,
) -> jetstream::context::PublishAckFuture {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", format!("{} {}", e.source, e.id).as_str());
    let body = e.to_json_value().to_string();
    js.publish_with_headers(subject.to_owned(), h, body.into())
        .await
        .unwrap()
}

async fn native_throughput(js: &jetstream::Context, subject: &str) -> f64 {
    let (js, subject) = (js.clone(), subject.to_owned());
    bench::throughput(move |batch: Vec<CloudEvent>| {
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            let mut acks = Vec::with_capacity(batch.len());
            for e in &batch {
                acks.push(send(&js, &subject, e).await);
            }
            for a in acks {
                a.await.unwrap();
            }
        }
    })
    .await
}

async fn native_latency(js: &jetstream::Context, s: &stream::Stream, subject: &str) -> Vec<u64> {
    let clock = Stopwatch::start();
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
            lat.push(clock.latency_of_wire(&m.payload));
            m.double_ack().await.unwrap();
        }
        lat
    });
    bench::paced(clock, |e| async move {
        send(js, subject, &e).await.await.unwrap();
    })
    .await;
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
    let nats = Arc::new(NatsBackend::connect(opts).await.expect("NATS answers"));
    let b: Arc<dyn Backend> = nats.clone();
    let topic = TopicName::new("bench.events").unwrap();
    let g = bench::declare(b.as_ref(), "bench", "bench.latency").await;

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

    let events_subject = format!("{native_name}.events");
    bench::compare_publish(
        "nats",
        "async-nats",
        || bench::flotilla_throughput(b.clone(), &topic),
        || native_throughput(&js, &events_subject),
    )
    .await;
    let lt = TopicName::new("bench.latency").unwrap();
    let ours = bench::flotilla_latency(b.clone(), &lt, &g).await;
    let native = native_latency(&js, &s, &format!("{native_name}.latency")).await;
    bench::compare_latency("nats", ours, "async-nats", native);

    js.delete_stream(&native_name).await.unwrap();
    nats.destroy().await.unwrap();
}
