//! Flotilla's RabbitMQ backend vs lapin on the same workload and durability (persistent
//! messages, quorum queues, publisher confirms awaited): publish throughput and
//! publish-to-handler latency of single events (native: `basic_consume` + ack). The workload
//! and the Flotilla side are `flotilla_bus::bench`'s. Run by `bench/bus-brokers/run.sh`;
//! results in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use flotilla_amqp::{AmqpBackend, Options};
use flotilla_bus::Backend;
use flotilla_bus::bench::{self, LATENCY_SAMPLES, Stopwatch};
use flotilla_core::{CloudEvent, TopicName};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Publishes `e` persistently with routing key `key`, returning the pending confirm.
async fn send(ch: &Channel, exchange: &str, key: &str, e: &CloudEvent) -> PublisherConfirm {
    let body = e.to_json_value().to_string();
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        persistent(),
    )
    .await
    .unwrap()
}

async fn native_throughput(ch: &Channel, exchange: &str) -> f64 {
    let (ch, exchange) = (ch.clone(), exchange.to_owned());
    bench::throughput(move |batch: Vec<CloudEvent>| {
        let (ch, exchange) = (ch.clone(), exchange.clone());
        async move {
            let mut confirms = Vec::with_capacity(batch.len());
            for e in &batch {
                confirms.push(send(&ch, &exchange, "bench.events", e).await);
            }
            for c in confirms {
                c.await.unwrap();
            }
        }
    })
    .await
}

async fn native_latency(
    conn: &Connection,
    pubch: &Channel,
    exchange: &str,
    queue: &str,
) -> Vec<u64> {
    let clock = Stopwatch::start();
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
            lat.push(clock.latency_of_wire(&d.data));
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        lat
    });
    bench::paced(clock, |e| async move {
        send(pubch, exchange, "bench.latency", &e)
            .await
            .await
            .unwrap();
    })
    .await;
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
    let b: Arc<dyn Backend> = Arc::new(AmqpBackend::connect(opts).await.expect("RabbitMQ answers"));
    let topic = TopicName::new("bench.events").unwrap();
    let g = bench::declare(b.as_ref(), "bench", "bench.latency").await;
    let thr = bench::declare(b.as_ref(), "bench-all", "bench.events").await;
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

    bench::compare_publish(
        "amqp",
        "lapin",
        || bench::flotilla_throughput(b.clone(), &topic),
        || native_throughput(&ch, &nx),
    )
    .await;
    let lt = TopicName::new("bench.latency").unwrap();
    let ours = bench::flotilla_latency(b.clone(), &lt, &g).await;
    let native = native_latency(&conn, &ch, &nx, &lq).await;
    bench::compare_latency("amqp", ours, "lapin", native);

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
