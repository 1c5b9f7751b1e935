//! Flotilla's RabbitMQ backend vs lapin on the same workload and durability (persistent
//! messages, quorum queues, publisher confirms awaited): publish throughput with 4 concurrent
//! publishers sending batches of 50, and publish-to-handler latency of single events (native:
//! `basic_consume` + ack). Run by `bench/bus-brokers/run.sh`; results in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_amqp::{AmqpBackend, Options};
use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

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

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn flotilla_throughput(b: &Arc<AmqpBackend>, topic: &TopicName) -> f64 {
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

async fn native_throughput(ch: &Channel, exchange: &str) -> f64 {
    let base = Instant::now();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (ch, exchange) = (ch.clone(), exchange.to_owned());
            tokio::spawn(async move {
                for i in (0..EVENTS / PUBLISHERS).step_by(BATCH) {
                    let mut confirms = Vec::with_capacity(BATCH);
                    for j in 0..BATCH {
                        let e = event(p * EVENTS + i + j, base).to_json_value().to_string();
                        let opts = BasicPublishOptions::default();
                        let c = ch.basic_publish(
                            exchange.as_str().into(),
                            "bench.events".into(),
                            opts,
                            e.as_bytes(),
                            persistent(),
                        );
                        confirms.push(c.await.unwrap());
                    }
                    for c in confirms {
                        c.await.unwrap();
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

async fn flotilla_latency(b: &Arc<AmqpBackend>, topic: &TopicName, g: &GroupName) -> Vec<u64> {
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

async fn native_latency(
    conn: &Connection,
    pubch: &Channel,
    exchange: &str,
    queue: &str,
) -> Vec<u64> {
    let base = Instant::now();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(256, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(LATENCY_SAMPLES);
        while lat.len() < LATENCY_SAMPLES {
            let d = consumer.next().await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
            lat.push(base.elapsed().as_micros() as u64 - v["data"]["t"].as_u64().unwrap());
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        lat
    });
    for n in 0..LATENCY_SAMPLES {
        let e = event(n, base).to_json_value().to_string();
        let opts = BasicPublishOptions::default();
        pubch
            .basic_publish(
                exchange.into(),
                "bench.latency".into(),
                opts,
                e.as_bytes(),
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    task.await.unwrap()
}

async fn quorum_queue(ch: &Channel, name: &str) {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum".to_owned())),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), durable, args).await.unwrap();
}

#[tokio::main]
async fn main() {
    let url = std::env::var("FLOTILLA_TEST_AMQP_URL")
        .unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let prefix = format!("flotilla_bench_{}", std::process::id());
    let opts = Options {
        url: url.clone(),
        prefix: prefix.clone(),
        ..Options::default()
    };
    let b = Arc::new(AmqpBackend::connect(opts).await.expect("RabbitMQ answers"));
    let topic = TopicName::new("bench.events").unwrap();
    let g = GroupName::new("bench").unwrap();
    let thr = GroupName::new("bench-all").unwrap();
    for (name, pattern) in [(&g, "bench.latency"), (&thr, "bench.events")] {
        let spec = GroupSpec {
            name: name.clone(),
            pattern: TopicPattern::new(pattern).unwrap(),
        };
        b.declare_group(&spec).await.unwrap();
    }
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // The native side gets the same topology shape: a topic exchange bound to quorum queues.
    let (nq, lq, nx) = (
        format!("{prefix}.native"),
        format!("{prefix}.native_lat"),
        format!("{prefix}.native_x"),
    );
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        nx.as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .unwrap();
    for (q, key) in [(&nq, "bench.events"), (&lq, "bench.latency")] {
        quorum_queue(&ch, q).await;
        ch.queue_bind(
            q.as_str().into(),
            nx.as_str().into(),
            key.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    for round in 0..2 {
        let (ours, native) = if round == 0 {
            let o = flotilla_throughput(&b, &topic).await;
            (o, native_throughput(&ch, &nx).await)
        } else {
            let n = native_throughput(&ch, &nx).await;
            (flotilla_throughput(&b, &topic).await, n)
        };
        println!(
            "amqp publish  flotilla {ours:>9.0} ev/s  lapin      {native:>9.0} ev/s  ratio {:.3}",
            ours / native
        );
    }
    let lt = TopicName::new("bench.latency").unwrap();
    let (f50, f99) = report("flotilla", flotilla_latency(&b, &lt, &g).await);
    let (n50, n99) = report("lapin", native_latency(&conn, &ch, &nx, &lq).await);
    println!(
        "amqp latency ratio p50 {:.3}  p99 {:.3}",
        f50 / n50,
        f99 / n99
    );

    b.delete_group(&g).await.unwrap();
    b.delete_group(&thr).await.unwrap();
    for q in [nq, lq] {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    ch.exchange_delete(
        format!("{prefix}.events").as_str().into(),
        Default::default(),
    )
    .await
    .unwrap();
}
