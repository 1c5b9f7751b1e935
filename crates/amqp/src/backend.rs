//! [`AmqpBackend`]: the connection, the confirm channel, and group declaration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_bus::{Error as BusError, GroupName, GroupSpec, Outgoing, PublishOutcome};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::task::JoinHandle;

use crate::codec::{PUBLISHED, TOPIC, headers, properties, text, unix_ms};
use crate::consume::{GroupConsumer, InFlight};
use crate::topology::{
    binding_key, dlq_queue, dlq_queue_args, exchange, group_queue, group_queue_args, marker_args,
    marker_exchange,
};
use crate::{Error, Options};

/// The bus on RabbitMQ; clones share one connection.
#[derive(Debug, Clone)]
pub struct AmqpBackend {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    /// Publisher-confirms channel for every publish.
    pub(crate) confirm: Channel,
    pub(crate) opts: Options,
    pub(crate) consumers: tokio::sync::Mutex<HashMap<GroupName, Arc<GroupConsumer>>>,
    pub(crate) in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
    pub(crate) topics: Mutex<HashMap<flotilla_core::TopicName, u64>>,
    pub(crate) groups: Mutex<HashMap<GroupName, GroupSpec>>,
    /// Retry queues declared by this process, per group (deleted with the group).
    pub(crate) retry_queues: Mutex<HashMap<GroupName, std::collections::HashSet<String>>>,
    /// Delay queues declared by this process.
    pub(crate) delay_queues: Mutex<std::collections::HashSet<String>>,
    reaper: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reaper.abort();
    }
}

pub(crate) fn broker(op: &'static str) -> impl Fn(lapin::Error) -> BusError {
    move |e| BusError::Unavailable(format!("RabbitMQ {op}: {e}"))
}

impl AmqpBackend {
    /// Connects, opens the confirm channel and declares the topic exchange.
    pub async fn connect(opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        let conn = Connection::connect(&opts.url, ConnectionProperties::default())
            .await
            .map_err(|e| Error::Connect {
                url: flotilla_core::redact::url(&opts.url),
                reason: flotilla_core::redact::text_about(&e.to_string(), &opts.url),
            })?;
        let confirm = conn
            .create_channel()
            .await
            .map_err(|e| Error::broker("open channel", e))?;
        confirm
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::broker("confirm select", e))?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        confirm
            .exchange_declare(
                exchange(&opts).into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| Error::broker("declare exchange", e))?;
        crate::delay::declare_exchange(&confirm, &opts)
            .await
            .map_err(|e| Error::broker("declare delay exchange", e))?;
        let in_flight = Arc::new(Mutex::new(HashMap::new()));
        let reaper = crate::consume::spawn_reaper(in_flight.clone(), opts.lease_tick);
        let inner = Inner {
            conn,
            confirm,
            opts,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            in_flight,
            topics: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            retry_queues: Mutex::new(HashMap::new()),
            delay_queues: Mutex::new(std::collections::HashSet::new()),
            reaper,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The options this backend runs with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    pub(crate) fn opts(&self) -> &Options {
        &self.inner.opts
    }

    /// A fresh channel: a refused declaration closes its channel, so declarations that may
    /// be refused get their own.
    pub(crate) async fn channel(&self) -> Result<Channel, BusError> {
        self.inner
            .conn
            .create_channel()
            .await
            .map_err(broker("open channel"))
    }

    /// Publishes on the confirm channel; the future resolves once the broker confirms.
    pub(crate) async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: lapin::BasicProperties,
        mandatory: bool,
    ) -> Result<lapin::PublisherConfirm, BusError> {
        let opts = BasicPublishOptions {
            mandatory,
            ..Default::default()
        };
        self.inner
            .confirm
            .basic_publish(exchange.into(), routing_key.into(), opts, body, props)
            .await
            .map_err(broker("publish"))
    }

    /// Publishes a batch: every message is sent, then every confirm awaited. `Ok` only once
    /// the broker confirmed each one (for quorum queues: a majority has it on disk).
    pub(crate) async fn publish_batch(
        &self,
        batch: Vec<Outgoing>,
    ) -> Result<Vec<PublishOutcome>, BusError> {
        let now = unix_ms(std::time::SystemTime::now());
        let mut confirms = Vec::with_capacity(batch.len());
        for out in &batch {
            out.event.validate()?;
            if let Some(at) = out.not_before.filter(|t| *t > std::time::SystemTime::now()) {
                self.publish_delayed(out, at).await?;
                continue;
            }
            let h = headers(vec![
                (TOPIC, text(out.topic.as_str())),
                (PUBLISHED, AMQPValue::LongLongInt(now)),
            ]);
            let body = out.event.to_json_value().to_string();
            let props = properties(&out.event.id, h);
            let ex = exchange(self.opts());
            confirms.push(
                self.send(&ex, out.topic.as_str(), body.as_bytes(), props, false)
                    .await?,
            );
        }
        for c in confirms {
            confirmed(c.await.map_err(broker("publish confirm"))?)?;
        }
        self.count_topics(&batch);
        Ok(vec![PublishOutcome::Stored; batch.len()])
    }

    fn count_topics(&self, batch: &[Outgoing]) {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|p| p.into_inner());
        for out in batch {
            *topics.entry(out.topic.clone()).or_default() += 1;
        }
    }

    pub(crate) async fn declare(&self, spec: &GroupSpec) -> Result<(), BusError> {
        let (o, g) = (self.opts(), &spec.name);
        let ch = self.channel().await?;
        let marker = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let args = marker_args(o, &spec.pattern);
        let declared = ch
            .exchange_declare(
                marker_exchange(o, g).into(),
                ExchangeKind::Fanout,
                marker,
                args,
            )
            .await;
        if let Err(e) = declared {
            return Err(BusError::Conflict(format!(
                "group {g} is declared on another pattern than {} ({e})",
                spec.pattern
            )));
        }
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dlq = dlq_queue(o, g);
        ch.queue_declare(dlq.as_str().into(), durable, dlq_queue_args())
            .await
            .map_err(broker("declare DLQ queue"))?;
        let q = group_queue(o, g);
        ch.queue_declare(q.as_str().into(), durable, group_queue_args(o, g))
            .await
            .map_err(broker("declare group queue"))?;
        ch.queue_bind(
            q.as_str().into(),
            exchange(o).into(),
            binding_key(&spec.pattern).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker("bind group queue"))?;
        let _ = ch.close(200, "declared".into()).await;
        let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.insert(g.clone(), spec.clone());
        Ok(())
    }

    pub(crate) async fn delete(&self, g: &GroupName) -> Result<(), BusError> {
        if let Some(c) = self.inner.consumers.lock().await.remove(g) {
            c.close().await;
        }
        let o = self.opts();
        let ch = self.channel().await?;
        let retries = self
            .inner
            .retry_queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(g);
        let queues = [group_queue(o, g), dlq_queue(o, g)].into_iter();
        for q in queues.chain(retries.into_iter().flatten()) {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(broker("delete queue"))?;
        }
        ch.exchange_delete(marker_exchange(o, g).into(), Default::default())
            .await
            .map_err(broker("delete marker exchange"))?;
        let _ = ch.close(200, "deleted".into()).await;
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(g);
        Ok(())
    }
}

/// A confirm that is not a plain ack (a nack, or a mandatory message returned unroutable)
/// is a failure: the event may not be stored.
pub(crate) fn confirmed(c: Confirmation) -> Result<(), BusError> {
    match c {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(BusError::Unavailable(
            "RabbitMQ returned the message as unroutable".into(),
        )),
        Confirmation::Nack(_) => Err(BusError::Unavailable(
            "RabbitMQ refused the message (nack)".into(),
        )),
    }
}
