//! What a group still owes, read without leasing anything: for `flotilla migrate`, which
//! copies a stopped platform's undelivered events to another engine. Reading through
//! [`Backend::receive`](flotilla_bus::Backend::receive) would count a delivery attempt and
//! take a lease on every event, changing the very state being copied.

use std::time::SystemTime;

use flotilla_bus::{Error as BusError, GroupName};
use flotilla_core::{CloudEvent, TopicName};

use super::{SqliteBus, from_ms, map_err};

/// One event a group has not acked or dead-lettered yet (in flight, waiting or delayed).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    /// The group that owes it.
    pub group: GroupName,
    /// Its place in the bus's publish order (shared by every group it was routed to).
    pub seq: i64,
    /// The topic it was published to.
    pub topic: TopicName,
    /// The event.
    pub event: CloudEvent,
    /// Deliveries made to the group so far.
    pub attempts: u32,
    /// When it is next deliverable to the group (a delay, a nack's backoff or a lease end).
    pub visible_at: SystemTime,
}

struct Row {
    group: String,
    seq: i64,
    topic: String,
    event: String,
    attempts: u32,
    visible_at: i64,
}

impl SqliteBus {
    /// Every pending delivery of every group, in publish order (then by group name).
    pub async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, BusError> {
        let rows = self
            .db()
            .reads()
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT d.grp, d.seq, m.topic, m.event, d.attempts, d.visible_at
                     FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq
                     ORDER BY d.seq, d.grp",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(Row {
                        group: r.get(0)?,
                        seq: r.get(1)?,
                        topic: r.get(2)?,
                        event: r.get(3)?,
                        attempts: r.get(4)?,
                        visible_at: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .map_err(map_err)?;
        rows.into_iter().map(decode).collect()
    }
}

fn decode(r: Row) -> Result<PendingDelivery, BusError> {
    let corrupt = |what: String| BusError::Backend(format!("stored event {}: {what}", r.seq));
    Ok(PendingDelivery {
        group: GroupName::new(r.group.clone()).map_err(|e| corrupt(e.to_string()))?,
        seq: r.seq,
        topic: TopicName::new(r.topic.clone()).map_err(|e| corrupt(e.to_string()))?,
        event: CloudEvent::from_json_slice(r.event.as_bytes())
            .map_err(|e| corrupt(e.to_string()))?,
        attempts: r.attempts,
        visible_at: from_ms(r.visible_at),
    })
}
