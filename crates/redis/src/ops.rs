//! The contract's operations, each one script call (or a read).

use std::time::{Duration, SystemTime};

use flotilla_bus::{
    Delivery, Error as BusError, Failure, GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt,
};
use redis::Value;
use tokio::time::Instant;

use crate::RedisBackend;
use crate::codec::{array, delivery, int, parse_token, reason_code, text};
use crate::error::bus_error;
use crate::scripts::{ACK, DEAD, DECLARE, DELETE_GROUP, NACK, PUBLISH, RECEIVE};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBackend {
    pub(crate) async fn declare(&self, spec: &GroupSpec) -> Result<(), BusError> {
        let mut conn = self.conn();
        let r: redis::RedisResult<i64> = DECLARE
            .arg(self.prefix())
            .arg(spec.name.as_str())
            .arg(spec.pattern.as_str())
            .invoke_async(&mut conn)
            .await;
        r.map(drop).map_err(bus_error)
    }

    pub(crate) async fn delete(&self, group: &GroupName) -> Result<(), BusError> {
        let mut conn = self.conn();
        let r: redis::RedisResult<i64> = DELETE_GROUP
            .arg(self.prefix())
            .arg(group.as_str())
            .invoke_async(&mut conn)
            .await;
        r.map(drop).map_err(bus_error)
    }

    /// One script call per batch: dedupe, delay or route every event atomically. The script
    /// takes the delayed events first (number, not-before ms), then three arguments per event,
    /// and answers the numbers of the duplicates.
    pub(crate) async fn publish_batch(
        &self,
        batch: Vec<Outgoing>,
    ) -> Result<Vec<PublishOutcome>, BusError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let delayed: Vec<(usize, u64)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, out)| {
                let at = out
                    .not_before?
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?;
                Some((i + 1, ms(at)))
            })
            .collect();
        let mut call = PUBLISH.prepare_invoke();
        call.arg(self.prefix())
            .arg(ms(self.inner.opts.dedupe_window))
            .arg(delayed.len());
        for (n, at) in delayed {
            call.arg(n).arg(at);
        }
        for out in &batch {
            out.event.validate()?;
            call.arg(out.topic.as_str())
                .arg(format!("{} {}", out.event.source, out.event.id))
                .arg(out.event.to_json_value().to_string());
        }
        let mut conn = self.conn();
        let dropped: Vec<usize> = call.invoke_async(&mut conn).await.map_err(bus_error)?;
        let mut outcomes = vec![PublishOutcome::Stored; batch.len()];
        for n in dropped {
            let slot = n
                .checked_sub(1)
                .and_then(|i| outcomes.get_mut(i))
                .ok_or_else(|| BusError::Backend(format!("Redis publish answered event {n}")))?;
            *slot = PublishOutcome::Duplicate;
        }
        Ok(outcomes)
    }

    /// Leases ready entries; when none, blocks on the group's stream (or until the next
    /// nacked or expired entry is due) and tries again, until `wait` is over.
    pub(crate) async fn receive_leased(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        let consumer = format!("c{}", std::process::id());
        loop {
            let (entries, next_due, last) = self.lease_ready(group, &consumer, max, lease).await?;
            if !entries.is_empty() || max == 0 {
                return entries.iter().map(|e| delivery(group, e)).collect();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let block = next_due.map_or(left, |d| d.min(left));
            self.wait_for_entry(group, &last, block).await?;
        }
    }

    async fn lease_ready(
        &self,
        group: &GroupName,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Value>, Option<Duration>, String), BusError> {
        let mut conn = self.conn();
        let v: Value = RECEIVE
            .arg(self.prefix())
            .arg(group.as_str())
            .arg(consumer)
            .arg(max)
            .arg(ms(lease).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(bus_error)?;
        let bad = || BusError::Backend(format!("Redis receive answered {v:?}"));
        let parts = array(&v).ok_or_else(bad)?;
        let [entries, next, last] = parts else {
            return Err(bad());
        };
        let entries = array(entries).ok_or_else(bad)?.to_vec();
        let next = int(next).ok_or_else(bad)?;
        let next = u64::try_from(next).ok().map(Duration::from_millis);
        Ok((entries, next, text(last).unwrap_or_default()))
    }

    pub(crate) async fn ack_entry(&self, r: &Receipt) -> Result<(), BusError> {
        let (id, lease) = parse_token(&r.token)?;
        let mut conn = self.conn();
        let res: redis::RedisResult<i64> = ACK
            .arg(self.prefix())
            .arg(r.group.as_str())
            .arg(id)
            .arg(lease)
            .invoke_async(&mut conn)
            .await;
        res.map(drop).map_err(bus_error)
    }

    pub(crate) async fn nack_entry(&self, r: &Receipt, delay: Duration) -> Result<(), BusError> {
        let (id, lease) = parse_token(&r.token)?;
        let mut conn = self.conn();
        let res: redis::RedisResult<i64> = NACK
            .arg(self.prefix())
            .arg(r.group.as_str())
            .arg(id)
            .arg(lease)
            .arg(ms(delay))
            .invoke_async(&mut conn)
            .await;
        res.map(drop).map_err(bus_error)
    }

    pub(crate) async fn dead_letter_entry(&self, r: &Receipt, f: Failure) -> Result<(), BusError> {
        let (id, lease) = parse_token(&r.token)?;
        let mut conn = self.conn();
        let res: redis::RedisResult<String> = DEAD
            .arg(self.prefix())
            .arg(r.group.as_str())
            .arg(id)
            .arg(lease)
            .arg(reason_code(f.reason))
            .arg(f.last_error)
            .invoke_async(&mut conn)
            .await;
        res.map(drop).map_err(bus_error)
    }
}
