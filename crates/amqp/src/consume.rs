//! Receiving with leases on top of AMQP consumers.
//!
//! Each group has one AMQP consumer per process (prefetch = `Options::prefetch`) feeding a
//! buffer that `receive` drains. AMQP has no lease: a message stays with its channel until
//! acked or the channel closes (the consumer died, and the broker redelivers). So leases
//! live here: every delivery handed out is recorded with its lease end, and a reaper returns
//! expired ones to the queue (`basic.nack` with requeue), which the quorum queue counts in
//! `x-delivery-count`. A receipt settles only while its record exists, which fences stale
//! receipts within the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flotilla_bus::{Delivery, Error as BusError, GroupName, Receipt};
use flotilla_core::{CloudEvent, TopicName};
use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::AmqpBackend;
use crate::backend::broker;
use crate::codec::{attempt_of, event_of};
use crate::topology::group_queue;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A delivery handed out and not yet settled.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) group: GroupName,
    pub(crate) channel: Channel,
    pub(crate) tag: u64,
    pub(crate) lease_end: Instant,
    pub(crate) topic: TopicName,
    pub(crate) event: CloudEvent,
    pub(crate) attempt: u32,
    pub(crate) published_at: SystemTime,
}

/// One group's AMQP consumer and its buffer.
#[derive(Debug)]
pub(crate) struct GroupConsumer {
    channel: Channel,
    generation: u64,
    rx: tokio::sync::Mutex<mpsc::Receiver<lapin::message::Delivery>>,
    task: JoinHandle<()>,
}

impl GroupConsumer {
    pub(crate) async fn close(&self) {
        self.task.abort();
        let _ = self.channel.close(200, "group closed".into()).await;
    }
}

/// Returns expired leases to their queue every `tick`.
pub(crate) fn spawn_reaper(
    in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
    tick: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let expired: Vec<InFlight> = {
                let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let keys: Vec<String> = map
                    .iter()
                    .filter(|(_, f)| f.lease_end <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.iter().filter_map(|k| map.remove(k)).collect()
            };
            for f in expired {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                if let Err(e) = f.channel.basic_nack(f.tag, requeue).await {
                    tracing::warn!(error = %e, "expired lease not returned; the channel's end will return it");
                }
            }
        }
    })
}

impl AmqpBackend {
    async fn consumer(&self, g: &GroupName) -> Result<Arc<GroupConsumer>, BusError> {
        let mut consumers = self.inner.consumers.lock().await;
        if let Some(c) = consumers.get(g) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.start_consumer(g).await?);
        consumers.insert(g.clone(), c.clone());
        Ok(c)
    }

    async fn start_consumer(&self, g: &GroupName) -> Result<GroupConsumer, BusError> {
        let channel = self.channel().await?;
        channel
            .basic_qos(self.opts().prefetch, BasicQosOptions::default())
            .await
            .map_err(broker("qos"))?;
        let queue = group_queue(self.opts(), g);
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BusError::NotFound {
                what: "group",
                id: format!("{g} ({e})"),
            })?;
        let (tx, rx) = mpsc::channel(usize::from(self.opts().prefetch));
        let task = tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        });
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        Ok(GroupConsumer {
            channel,
            generation,
            rx: tokio::sync::Mutex::new(rx),
            task,
        })
    }

    pub(crate) async fn receive_leased(
        &self,
        g: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let c = self.consumer(g).await?;
        let mut rx = c.rx.lock().await;
        let mut raw = Vec::new();
        if max > 0
            && let Ok(Some(first)) = tokio::time::timeout(wait, rx.recv()).await
        {
            raw.push(first);
        }
        while raw.len() < max {
            let Ok(d) = rx.try_recv() else { break };
            raw.push(d);
        }
        drop(rx);
        let mut out = Vec::with_capacity(raw.len());
        for d in raw {
            if let Some(d) = self.lease(g, &c, d, lease).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Records the lease and builds the delivery; a message this backend did not write is
    /// rejected, which dead-letters it to the group's DLQ queue (never dropped).
    async fn lease(
        &self,
        g: &GroupName,
        c: &GroupConsumer,
        d: lapin::message::Delivery,
        lease: Duration,
    ) -> Result<Option<Delivery>, BusError> {
        let (topic, event, published_at) = match event_of(&d.properties, &d.data) {
            Ok(parts) => parts,
            Err(reason) => {
                tracing::error!(group = %g, %reason, "undecodable message dead-lettered");
                c.channel
                    .basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
                    .await
                    .map_err(broker("reject"))?;
                return Ok(None);
            }
        };
        let token = format!("{}.{}", c.generation, d.delivery_tag);
        let attempt = attempt_of(&d.properties);
        let record = InFlight {
            group: g.clone(),
            channel: c.channel.clone(),
            tag: d.delivery_tag,
            lease_end: Instant::now() + lease,
            topic: topic.clone(),
            event: event.clone(),
            attempt,
            published_at,
        };
        let mut map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.insert(token.clone(), record);
        let receipt = Receipt {
            group: g.clone(),
            token,
        };
        Ok(Some(Delivery {
            receipt,
            topic,
            event,
            attempt,
            published_at,
        }))
    }

    /// Ends the lease record of `receipt`, or `LeaseLost` if it expired or was settled.
    pub(crate) fn take(&self, receipt: &Receipt) -> Result<InFlight, BusError> {
        let mut map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&receipt.token).ok_or(BusError::LeaseLost)
    }
}
