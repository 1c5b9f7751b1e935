//! Delayed publish without a plugin: per-bucket delay queues (see
//! [`delay_queue_args`](crate::topology)) behind a headers exchange. A delay is rounded up to
//! its bucket (at most 12.5 % later), so an event is never delivered before its time.

use std::time::SystemTime;

use flotilla_bus::{Error as BusError, Outgoing};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::AmqpBackend;
use crate::backend::{broker, confirmed};
use crate::codec::{PUBLISHED, TOPIC, headers, properties, text, unix_ms};
use crate::topology::{
    DELAY_BUCKET, bucket_ms, delay_binding, delay_exchange, delay_queue, delay_queue_args,
};

pub(crate) async fn declare_exchange(ch: &Channel, o: &crate::Options) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        delay_exchange(o).into(),
        ExchangeKind::Headers,
        durable,
        FieldTable::default(),
    )
    .await
}

impl AmqpBackend {
    /// Publishes one delayed event and waits for its confirm.
    pub(crate) async fn publish_delayed(
        &self,
        out: &Outgoing,
        at: SystemTime,
    ) -> Result<(), BusError> {
        let ms = at
            .duration_since(SystemTime::now())
            .map_or(1, |d| d.as_millis().max(1));
        let bucket = bucket_ms(u64::try_from(ms).unwrap_or(u64::MAX));
        let h = headers(vec![
            (TOPIC, text(out.topic.as_str())),
            (
                PUBLISHED,
                AMQPValue::LongLongInt(unix_ms(SystemTime::now())),
            ),
            (
                DELAY_BUCKET,
                AMQPValue::LongLongInt(i64::try_from(bucket).unwrap_or(i64::MAX)),
            ),
            (
                "CC",
                AMQPValue::FieldArray(FieldArray::from(vec![text(out.topic.as_str())])),
            ),
        ]);
        let body = out.event.to_json_value().to_string();
        let props = properties(&out.event.id, h);
        self.delay_queue(bucket, false).await?;
        let ex = delay_exchange(self.opts());
        let sent = self
            .send(&ex, "", body.as_bytes(), props.clone(), true)
            .await?;
        if confirmed(sent.await.map_err(broker("confirm"))?).is_err() {
            // The broker expired the idle delay queue since this process declared it.
            self.delay_queue(bucket, true).await?;
            let sent = self.send(&ex, "", body.as_bytes(), props, true).await?;
            confirmed(sent.await.map_err(broker("confirm"))?)?;
        }
        Ok(())
    }

    async fn delay_queue(&self, bucket: u64, redeclare: bool) -> Result<(), BusError> {
        let name = delay_queue(self.opts(), bucket);
        let known = {
            let set = self
                .inner
                .delay_queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            set.contains(&name)
        };
        if known && !redeclare {
            return Ok(());
        }
        let ch = self.channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(
            name.as_str().into(),
            durable,
            delay_queue_args(self.opts(), bucket),
        )
        .await
        .map_err(broker("declare delay queue"))?;
        let ex = delay_exchange(self.opts());
        ch.queue_bind(
            name.as_str().into(),
            ex.into(),
            "".into(),
            QueueBindOptions::default(),
            delay_binding(bucket),
        )
        .await
        .map_err(broker("bind delay queue"))?;
        let _ = ch.close(200, "declared".into()).await;
        let mut set = self
            .inner
            .delay_queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.insert(name);
        Ok(())
    }
}
