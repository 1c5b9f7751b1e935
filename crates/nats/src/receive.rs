//! Leasing events to a consumer: a pull from the group's replay consumer, then from its
//! event consumer, waiting on the latter only when nothing is ready.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use flotilla_bus::{Delivery, Error as BusError, GroupName, Receipt};
use flotilla_core::{CloudEvent, TopicName};
use futures_util::StreamExt;

use crate::NatsBackend;
use crate::backend::GroupConsumers;
use crate::topology::{TOPIC_HEADER, topic_of};

/// Every this many receives, the replay consumer is pulled first.
const REPLAY_EVERY: u64 = 16;

/// JetStream refuses pull requests that expire sooner than this.
const MIN_EXPIRES: Duration = Duration::from_millis(10);

impl NatsBackend {
    pub(crate) async fn receive_leased(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let c = self.consumers(group).await?;
        let mut msgs = self.fetch_ready(&c, max).await?;
        if msgs.is_empty() && !wait.is_zero() {
            // Return as soon as one arrives: under load the no-wait pulls above fill batches.
            msgs = fetch_wait(&c.main, wait.max(MIN_EXPIRES)).await?;
        }
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            if let Some(d) = self.decode(group, m).await? {
                if lease > self.inner.opts.ack_wait {
                    self.inner.leases.hold(&d.receipt.token, lease);
                }
                out.push(d);
            }
        }
        Ok(out)
    }

    /// What is ready now: one pull from the event consumer, and from the replay consumer
    /// when that came back short or every [`REPLAY_EVERY`]th call (so replays are not
    /// starved by a busy group, while a busy group pays one round trip per receive).
    async fn fetch_ready(&self, c: &GroupConsumers, max: usize) -> Result<Vec<Message>, BusError> {
        let replay_first = self
            .inner
            .receives
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(REPLAY_EVERY);
        let mut msgs = Vec::new();
        if replay_first {
            msgs = fetch_now(&c.replay, max).await?;
        }
        if msgs.len() < max {
            msgs.extend(fetch_now(&c.main, max - msgs.len()).await?);
        }
        if msgs.len() < max && !replay_first {
            msgs.extend(fetch_now(&c.replay, max - msgs.len()).await?);
        }
        Ok(msgs)
    }

    /// A delivery from a JetStream message; a message this backend did not write is
    /// terminated (kept in the stream for inspection) and logged, never handed out.
    async fn decode(&self, group: &GroupName, m: Message) -> Result<Option<Delivery>, BusError> {
        match self.delivery(group, &m) {
            Ok(d) => Ok(Some(d)),
            Err(reason) => {
                tracing::error!(subject = %m.subject, %reason, "undecodable message terminated");
                m.ack_with(AckKind::Term)
                    .await
                    .map_err(|e| BusError::Unavailable(format!("NATS term: {e}")))?;
                Ok(None)
            }
        }
    }

    fn delivery(&self, group: &GroupName, m: &Message) -> Result<Delivery, String> {
        let info = m.info().map_err(|e| e.to_string())?;
        let token = m.reply.as_ref().ok_or("no reply subject")?.to_string();
        let topic = match topic_of(&self.inner.opts, &m.subject, "ev") {
            Some(t) => t.to_owned(),
            None => header(m, TOPIC_HEADER).ok_or("no topic")?,
        };
        Ok(Delivery {
            receipt: Receipt {
                group: group.clone(),
                token,
            },
            topic: TopicName::new(topic).map_err(|e| e.to_string())?,
            event: CloudEvent::from_json_slice(&m.payload).map_err(|e| e.to_string())?,
            attempt: u32::try_from(info.delivered).unwrap_or(u32::MAX),
            published_at: SystemTime::from(info.published),
        })
    }
}

pub(crate) fn header(m: &async_nats::Message, name: &str) -> Option<String> {
    let h = m.headers.as_ref()?.get(name)?;
    Some(h.as_str().to_owned())
}

async fn fetch_now(c: &PullConsumer, max: usize) -> Result<Vec<Message>, BusError> {
    let batch = c
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(|e| BusError::Unavailable(format!("NATS fetch: {e}")))?;
    collect(batch).await
}

async fn fetch_wait(c: &PullConsumer, wait: Duration) -> Result<Vec<Message>, BusError> {
    let batch = c
        .batch()
        .max_messages(1)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| BusError::Unavailable(format!("NATS pull: {e}")))?;
    collect(batch).await
}

async fn collect<S, E>(mut s: S) -> Result<Vec<Message>, BusError>
where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        out.push(m.map_err(|e| BusError::Unavailable(format!("NATS pull: {e}")))?);
    }
    Ok(out)
}
