//! The dead-letter queues: one quorum queue per group. AMQP reads a queue only by taking
//! from it, so inspection takes every entry on a private channel (`basic.get`, unacked),
//! acts on the ones asked for, and closes the channel, which returns the rest to the queue.
//! Listing across groups covers the groups this process has declared.

use flotilla_bus::{DeadLetter, DlqQuery, Error as BusError, GroupInfo, GroupName, TopicInfo};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::AmqpBackend;
use crate::backend::{broker, confirmed};
use crate::codec::{
    ATTEMPTS, PUBLISHED, TOPIC, dead_letter_of, headers, properties, text, unix_ms,
};
use crate::topology::{dlq_queue, group_queue};

const DEFAULT_LIMIT: usize = 100;
/// The most entries one inspection takes from a DLQ queue.
const SCAN_LIMIT: usize = 10_000;

/// A DLQ queue's entries, held on `channel` until it closes.
struct Scan {
    channel: Channel,
    entries: Vec<(u64, DeadLetter)>,
}

impl Scan {
    async fn ack(&self, tag: u64) -> Result<(), BusError> {
        self.channel
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(broker("ack dead letter"))
    }

    async fn close(self) {
        let _ = self.channel.close(200, "inspected".into()).await;
    }
}

impl AmqpBackend {
    fn known_groups(&self, only: Option<&GroupName>) -> Vec<GroupName> {
        match only {
            Some(g) => vec![g.clone()],
            None => {
                let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
                groups.keys().cloned().collect()
            }
        }
    }

    async fn scan(&self, g: &GroupName) -> Result<Scan, BusError> {
        let channel = self.channel().await?;
        let q = dlq_queue(self.opts(), g);
        let mut entries = Vec::new();
        while entries.len() < SCAN_LIMIT {
            let got = channel
                .basic_get(q.as_str().into(), BasicGetOptions::default())
                .await
                .map_err(broker("read DLQ"))?;
            let Some(m) = got else { break };
            let d = &m.delivery;
            entries.push((d.delivery_tag, dead_letter_of(g, &d.properties, &d.data)?));
        }
        Ok(Scan { channel, entries })
    }

    pub(crate) async fn list_dead_letters(
        &self,
        q: &DlqQuery,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let mut all = Vec::new();
        for g in self.known_groups(q.group.as_ref()) {
            let scan = self.scan(&g).await?;
            all.extend(scan.entries.iter().map(|(_, d)| d.clone()));
            scan.close().await;
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
        let after = q.after.as_deref().unwrap_or("");
        Ok(all
            .into_iter()
            .filter(|d| d.id.as_str() > after)
            .take(limit)
            .collect())
    }

    /// The scan holding dead letter `id`, and its delivery tag.
    async fn find(&self, id: &str) -> Result<(Scan, u64, DeadLetter), BusError> {
        for g in self.known_groups(None) {
            let scan = self.scan(&g).await?;
            let hit = scan.entries.iter().find(|(_, d)| d.id == id).cloned();
            match hit {
                Some((tag, d)) => return Ok((scan, tag, d)),
                None => scan.close().await,
            }
        }
        Err(BusError::NotFound {
            what: "dead letter",
            id: id.to_owned(),
        })
    }

    pub(crate) async fn dead_letter_by_id(&self, id: &str) -> Result<DeadLetter, BusError> {
        let (scan, _, d) = self.find(id).await?;
        scan.close().await;
        Ok(d)
    }

    /// Publishes the event back to its group's queue (confirmed), then removes the entry.
    pub(crate) async fn replay(&self, id: &str) -> Result<(), BusError> {
        let (scan, tag, d) = self.find(id).await?;
        let h = headers(vec![
            (TOPIC, text(d.topic.as_str())),
            (PUBLISHED, AMQPValue::LongLongInt(unix_ms(d.published_at))),
            (ATTEMPTS, AMQPValue::LongLongInt(0)),
        ]);
        let body = d.event.to_json_value().to_string();
        let q = group_queue(self.opts(), &d.group);
        let sent = self
            .send("", &q, body.as_bytes(), properties(&d.event.id, h), true)
            .await;
        let result = match sent {
            Ok(c) => match c.await.map_err(broker("confirm")) {
                Ok(c) => confirmed(c),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_ok() {
            scan.ack(tag).await?;
        }
        scan.close().await;
        result
    }

    pub(crate) async fn purge(&self, g: &GroupName, ids: &[String]) -> Result<u64, BusError> {
        if ids.is_empty() {
            let ch = self.channel().await?;
            let q = dlq_queue(self.opts(), g);
            let n = ch
                .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
                .await;
            let _ = ch.close(200, "purged".into()).await;
            return n.map(u64::from).map_err(broker("purge DLQ"));
        }
        let scan = self.scan(g).await?;
        let mut n = 0;
        for (tag, d) in &scan.entries {
            if ids.contains(&d.id) {
                scan.ack(*tag).await?;
                n += 1;
            }
        }
        scan.close().await;
        Ok(n)
    }

    pub(crate) fn list_topics(&self) -> Vec<TopicInfo> {
        let topics = self.inner.topics.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<TopicInfo> = topics
            .iter()
            .map(|(t, n)| TopicInfo {
                name: t.clone(),
                published: *n,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Message counts of a queue (ready messages: AMQP does not report unacked ones).
    async fn ready(&self, queue: String) -> Result<u64, BusError> {
        let ch = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await;
        let _ = ch.close(200, "counted".into()).await;
        Ok(u64::from(q.map_err(broker("count queue"))?.message_count()))
    }

    pub(crate) async fn list_groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        let specs: Vec<_> = {
            let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
            groups.values().cloned().collect()
        };
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let in_flight = self.in_flight_of(&spec.name);
            let pending = self.ready(group_queue(self.opts(), &spec.name)).await? + in_flight;
            let dead_letters = self.ready(dlq_queue(self.opts(), &spec.name)).await?;
            out.push(GroupInfo {
                spec,
                pending,
                dead_letters,
            });
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    fn in_flight_of(&self, g: &GroupName) -> u64 {
        let map = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.values().filter(|f| &f.group == g).count() as u64
    }
}
