//! Ending a lease: ack, nack with delay (a copy through a retry queue), dead-letter (a record
//! on the group's DLQ queue). Copies are confirmed by the broker before the original is acked,
//! so a crash in between duplicates, never loses.

use std::time::{Duration, SystemTime};

use flotilla_bus::{DeadLetter, Error as BusError, Failure, GroupName, Receipt};
use lapin::options::{BasicAckOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;

use crate::AmqpBackend;
use crate::backend::{broker, confirmed};
use crate::codec::{
    ATTEMPTS, PUBLISHED, TOPIC, dead_letter_headers, headers, properties, text, unix_ms,
};
use crate::consume::InFlight;
use crate::topology::{bucket_ms, dlq_queue, retry_queue, retry_queue_args};

impl AmqpBackend {
    pub(crate) async fn ack_delivery(&self, r: &Receipt) -> Result<(), BusError> {
        let f = self.take(r)?;
        f.channel
            .basic_ack(f.tag, BasicAckOptions::default())
            .await
            .map_err(broker("ack"))
    }

    pub(crate) async fn nack_delivery(&self, r: &Receipt, delay: Duration) -> Result<(), BusError> {
        let f = self.take(r)?;
        if delay.is_zero() {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            return f
                .channel
                .basic_nack(f.tag, requeue)
                .await
                .map_err(broker("nack"));
        }
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let bucket = bucket_ms(ms);
        let h = headers(vec![
            (TOPIC, text(f.topic.as_str())),
            (PUBLISHED, AMQPValue::LongLongInt(unix_ms(f.published_at))),
            (ATTEMPTS, AMQPValue::LongLongInt(i64::from(f.attempt))),
        ]);
        let body = f.event.to_json_value().to_string();
        let props = properties(&f.event.id, h);
        let queue = self.retry_queue(&r.group, bucket, false).await?;
        let sent = self
            .send("", &queue, body.as_bytes(), props.clone(), true)
            .await?;
        if confirmed(sent.await.map_err(broker("confirm"))?).is_err() {
            // The broker expired the idle queue since this process declared it.
            self.retry_queue(&r.group, bucket, true).await?;
            let sent = self.send("", &queue, body.as_bytes(), props, true).await?;
            confirmed(sent.await.map_err(broker("confirm"))?)?;
        }
        ack(&f).await
    }

    /// The retry queue for a bucket, declared unless this process already did (idle ones
    /// expire on the broker, so `redeclare` forces it).
    async fn retry_queue(
        &self,
        g: &GroupName,
        bucket: u64,
        redeclare: bool,
    ) -> Result<String, BusError> {
        let name = retry_queue(self.opts(), g, bucket);
        let known = {
            let map = self
                .inner
                .retry_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.get(g).is_some_and(|s| s.contains(&name))
        };
        if known && !redeclare {
            return Ok(name);
        }
        let ch = self.channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(
            name.as_str().into(),
            durable,
            retry_queue_args(self.opts(), g, bucket),
        )
        .await
        .map_err(broker("declare retry queue"))?;
        let _ = ch.close(200, "declared".into()).await;
        let mut map = self
            .inner
            .retry_queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(g.clone()).or_default().insert(name.clone());
        Ok(name)
    }

    pub(crate) async fn dead_letter_delivery(
        &self,
        r: &Receipt,
        failure: Failure,
    ) -> Result<(), BusError> {
        let f = self.take(r)?;
        let letter = DeadLetter {
            id: uuid::Uuid::now_v7().to_string(),
            group: r.group.clone(),
            topic: f.topic.clone(),
            event: f.event.clone(),
            reason: failure.reason,
            attempts: f.attempt,
            last_error: failure.last_error,
            published_at: f.published_at,
            dead_lettered_at: SystemTime::now(),
        };
        let body = letter.event.to_json_value().to_string();
        let props = properties(&letter.id, dead_letter_headers(&letter));
        let q = dlq_queue(self.opts(), &r.group);
        confirmed(
            self.send("", &q, body.as_bytes(), props, true)
                .await?
                .await
                .map_err(broker("confirm"))?,
        )?;
        ack(&f).await
    }
}

async fn ack(f: &InFlight) -> Result<(), BusError> {
    f.channel
        .basic_ack(f.tag, BasicAckOptions::default())
        .await
        .map_err(broker("ack"))
}
