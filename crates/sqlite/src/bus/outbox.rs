//! Transactional outbox and idempotent-consumer inbox on the same SQLite database as the
//! application's own data.
//!
//! Outbox: [`enqueue`] adds an event inside the caller's own write transaction, so the event
//! exists exactly when the business change does; a [`Relay`] then publishes the outbox, in
//! order, to any bus backend and deletes what was published. A relay that crashes between
//! publishing and deleting publishes again: the events keep their ids, so the bus's dedupe
//! drops the repeat (within its window).
//!
//! Inbox: [`first_delivery`] records `(consumer, source, id)` inside the handler's write
//! transaction and answers whether this is the first time, so a redelivered event's effect
//! is applied once.

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::outbox::decode_entry;
use flotilla_bus::{Backend, Error as BusError, Outgoing};
use flotilla_core::CloudEvent;
use rusqlite::{Connection, params};
use tokio_util::sync::CancellationToken;

use super::{from_ms, map_err, now_ms, to_ms};
use crate::{Database, Error};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_outbox (
    id         INTEGER PRIMARY KEY,
    topic      TEXT NOT NULL,
    event      TEXT NOT NULL,
    not_before INTEGER
);
CREATE TABLE IF NOT EXISTS bus_inbox (
    consumer TEXT NOT NULL,
    source   TEXT NOT NULL,
    id       TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (consumer, source, id)
) WITHOUT ROWID;
";

/// Creates the outbox and inbox tables if needed (blocking: call at start-up).
pub fn install(db: &Database) -> Result<(), Error> {
    db.writer().write_blocking(|c| Ok(c.execute_batch(SCHEMA)?))
}

/// Adds `out` to the outbox; call inside the transaction that makes the business change.
pub fn enqueue(c: &Connection, out: &Outgoing) -> Result<(), Error> {
    c.prepare_cached("INSERT INTO bus_outbox (topic, event, not_before) VALUES (?1, ?2, ?3)")?
        .execute(params![
            out.topic.as_str(),
            out.event.to_json_value().to_string(),
            out.not_before.map(to_ms)
        ])?;
    Ok(())
}

/// Records that `consumer` handled `event`; `true` the first time, `false` on a redelivery.
/// Call inside the transaction that applies the handler's effect, and skip the effect on
/// `false`.
pub fn first_delivery(c: &Connection, consumer: &str, event: &CloudEvent) -> Result<bool, Error> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO bus_inbox (consumer, source, id, at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![consumer, event.source, event.id, now_ms()])?;
    Ok(n == 1)
}

/// Publishes the outbox to a bus backend.
#[derive(Debug, Clone)]
pub struct Relay {
    db: Database,
    target: Arc<dyn Backend>,
    batch: usize,
    idle_poll: Duration,
}

impl Relay {
    /// A relay from `db`'s outbox to `target`, 256 events per publish, polling every 100 ms
    /// when the outbox is empty. Creates the tables if needed (blocking).
    pub fn new(db: Database, target: Arc<dyn Backend>) -> Result<Self, BusError> {
        install(&db).map_err(map_err)?;
        Ok(Self {
            db,
            target,
            batch: 256,
            idle_poll: Duration::from_millis(100),
        })
    }

    /// Publishes up to one batch, oldest first, and deletes it once the publish is durable.
    /// Answers how many events were relayed.
    pub async fn relay_once(&self) -> Result<usize, BusError> {
        let limit = i64::try_from(self.batch).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, String, Option<i64>)> = self
            .db
            .reads()
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT id, topic, event, not_before FROM bus_outbox ORDER BY id LIMIT ?1",
                )?;
                let rows = st.query_map([limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .map_err(map_err)?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        let batch = rows
            .into_iter()
            .map(|(id, topic, event, not_before)| {
                decode_entry(id, topic, event.as_bytes(), not_before.map(from_ms))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = batch.len();
        self.target.publish(batch).await?;
        self.db
            .writer()
            .write(move |c| {
                Ok::<_, Error>(c.execute("DELETE FROM bus_outbox WHERE id <= ?1", [last])?)
            })
            .await
            .map_err(map_err)?;
        Ok(n)
    }

    /// Relays until `shutdown` is cancelled; failures are logged and retried after a second.
    pub async fn run(self, shutdown: CancellationToken) {
        flotilla_bus::outbox::relay_until(shutdown, self.idle_poll, || self.relay_once()).await;
    }
}
