//! Leasing events to consumers and settling them: receive, ack, nack, dead-letter.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use flotilla_bus::{Delivery, Error as BusError, Failure, FailureReason, GroupName, Receipt};
use flotilla_core::{CloudEvent, TopicName};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::time::Instant;

use super::{SqliteBus, dur_ms, from_ms, map_err, now_ms};
use crate::Error;

/// A leased row as read inside the writer thread; decoded outside it.
struct Leased {
    seq: i64,
    lease: i64,
    attempts: u32,
    topic: String,
    event: String,
    published_at: i64,
}

const DUE: &str = "
SELECT d.seq, d.attempts, m.topic, m.event, m.published_at
FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq
WHERE d.grp = ?1 AND d.visible_at <= ?2
  AND (d.okey IS NULL OR NOT EXISTS (
        SELECT 1 FROM bus_deliveries e WHERE e.grp = d.grp AND e.okey = d.okey AND e.seq < d.seq))
ORDER BY d.seq LIMIT ?3";

pub(super) async fn receive(
    bus: &SqliteBus,
    group: &GroupName,
    max: usize,
    lease: Duration,
    wait: Duration,
) -> Result<Vec<Delivery>, BusError> {
    super::dlq::require_group(bus, group)?;
    let deadline = Instant::now() + wait;
    loop {
        let notified = bus.inner.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (rows, next_due) = take(bus, group, max.max(1), lease).await?;
        if !rows.is_empty() || Instant::now() >= deadline {
            return rows.into_iter().map(|r| decode(group, r)).collect();
        }
        let wake = next_due.map_or(deadline, |ms| {
            let ahead = u64::try_from(ms - now_ms()).unwrap_or(0).max(1);
            (Instant::now() + Duration::from_millis(ahead)).min(deadline)
        });
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn take(
    bus: &SqliteBus,
    group: &GroupName,
    max: usize,
    lease: Duration,
) -> Result<(Vec<Leased>, Option<i64>), BusError> {
    let grp = group.as_str().to_owned();
    let tokens = Arc::clone(&bus.inner.next_lease);
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    bus.db()
        .writer()
        .write(move |c| take_in(c, &grp, limit, dur_ms(lease), &tokens))
        .await
        .map_err(map_err)
}

fn take_in(
    c: &Connection,
    grp: &str,
    limit: i64,
    lease_ms: i64,
    tokens: &AtomicI64,
) -> Result<(Vec<Leased>, Option<i64>), Error> {
    let now = now_ms();
    let mut due = c.prepare_cached(DUE)?;
    let mut rows = due
        .query_map(params![grp, now, limit], |r| {
            Ok(Leased {
                seq: r.get(0)?,
                lease: 0,
                attempts: r.get::<_, u32>(1)? + 1,
                topic: r.get(2)?,
                event: r.get(3)?,
                published_at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        let next: Option<i64> = c
            .prepare_cached(
                "SELECT min(visible_at) FROM bus_deliveries WHERE grp = ?1 AND visible_at > ?2",
            )?
            .query_row(params![grp, now], |r| r.get(0))?;
        return Ok((rows, next));
    }
    let mut hold = c.prepare_cached(
        "UPDATE bus_deliveries SET visible_at = ?1, attempts = attempts + 1, lease = ?2
         WHERE grp = ?3 AND seq = ?4",
    )?;
    for row in &mut rows {
        row.lease = tokens.fetch_add(1, Ordering::Relaxed);
        hold.execute(params![now + lease_ms, row.lease, grp, row.seq])?;
    }
    Ok((rows, None))
}

fn decode(group: &GroupName, r: Leased) -> Result<Delivery, BusError> {
    let corrupt = |what: String| BusError::Backend(format!("stored event {}: {what}", r.seq));
    let event =
        CloudEvent::from_json_slice(r.event.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    let topic = TopicName::new(r.topic.clone()).map_err(|e| corrupt(e.to_string()))?;
    Ok(Delivery {
        receipt: Receipt {
            group: group.clone(),
            token: format!("{}:{}", r.seq, r.lease),
        },
        topic,
        event,
        attempt: r.attempts,
        published_at: from_ms(r.published_at),
    })
}

fn parse_token(token: &str) -> Result<(i64, i64), BusError> {
    let bad = || BusError::InvalidInput(format!("receipt token {token:?} is not a sqlite receipt"));
    let (a, b) = token.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// Runs `f(conn, group, seq, lease)` in the writer; `Ok(false)` from it means the receipt no
/// longer holds the lease.
async fn settle<F>(bus: &SqliteBus, receipt: &Receipt, f: F) -> Result<(), BusError>
where
    F: FnOnce(&Connection, &str, i64, i64) -> Result<bool, Error> + Send + 'static,
{
    let (seq, lease) = parse_token(&receipt.token)?;
    let grp = receipt.group.as_str().to_owned();
    let held = bus
        .db()
        .writer()
        .write(move |c| f(c, &grp, seq, lease))
        .await
        .map_err(map_err)?;
    if held {
        Ok(())
    } else {
        Err(BusError::LeaseLost)
    }
}

fn forget(c: &Connection, grp: &str, seq: i64) -> Result<(), Error> {
    c.prepare_cached("DELETE FROM bus_deliveries WHERE grp = ?1 AND seq = ?2")?
        .execute(params![grp, seq])?;
    c.prepare_cached(
        "DELETE FROM bus_messages WHERE seq = ?1
         AND NOT EXISTS (SELECT 1 FROM bus_deliveries WHERE seq = ?1)",
    )?
    .execute([seq])?;
    Ok(())
}

fn holds(c: &Connection, grp: &str, seq: i64, lease: i64) -> Result<bool, Error> {
    Ok(
        c.prepare_cached(
            "SELECT 1 FROM bus_deliveries WHERE grp = ?1 AND seq = ?2 AND lease = ?3",
        )?
        .query_row(params![grp, seq, lease], |_| Ok(()))
        .optional()?
        .is_some(),
    )
}

pub(super) async fn ack(bus: &SqliteBus, receipt: &Receipt) -> Result<(), BusError> {
    settle(bus, receipt, |c, grp, seq, lease| {
        if !holds(c, grp, seq, lease)? {
            return Ok(false);
        }
        forget(c, grp, seq)?;
        Ok(true)
    })
    .await
}

pub(super) async fn nack(
    bus: &SqliteBus,
    receipt: &Receipt,
    delay: Duration,
) -> Result<(), BusError> {
    let delay = dur_ms(delay);
    settle(bus, receipt, move |c, grp, seq, lease| {
        let changed = c
            .prepare_cached(
                "UPDATE bus_deliveries SET visible_at = ?1, lease = 0
                 WHERE grp = ?2 AND seq = ?3 AND lease = ?4",
            )?
            .execute(params![now_ms().saturating_add(delay), grp, seq, lease])?;
        Ok(changed == 1)
    })
    .await
}

pub(super) async fn dead_letter(
    bus: &SqliteBus,
    receipt: &Receipt,
    failure: Failure,
) -> Result<(), BusError> {
    let reason = reason_text(failure.reason);
    settle(bus, receipt, move |c, grp, seq, lease| {
        let moved = c
            .prepare_cached(
                "INSERT INTO bus_dlq (grp, topic, event, okey, reason, attempts, last_error,
                                      published_at, dead_lettered_at)
                 SELECT d.grp, m.topic, m.event, d.okey, ?4, d.attempts, ?5, m.published_at, ?6
                 FROM bus_deliveries d JOIN bus_messages m ON m.seq = d.seq
                 WHERE d.grp = ?1 AND d.seq = ?2 AND d.lease = ?3",
            )?
            .execute(params![
                grp,
                seq,
                lease,
                reason,
                failure.last_error,
                now_ms()
            ])?;
        if moved == 1 {
            forget(c, grp, seq)?;
        }
        Ok(moved == 1)
    })
    .await
}

pub(super) fn reason_text(r: FailureReason) -> &'static str {
    match r {
        FailureReason::MaxDeliveries => "max_deliveries",
        FailureReason::Rejected => "rejected",
    }
}
