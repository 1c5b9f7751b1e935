//! Transactional outbox and idempotent-consumer inbox on PostgreSQL (feature `outbox`).
//!
//! Outbox: [`Outbox::enqueue`] adds an event inside the caller's own transaction, so the
//! event exists exactly when the business change commits; a [`Relay`] publishes the outbox,
//! oldest first, to any `flotilla_bus::Backend` and deletes what it published. A relay that
//! crashes between publishing and deleting publishes again: the events keep their ids, so the
//! bus's publisher dedupe drops the repeat (within its window).
//!
//! Inbox: [`Outbox::first_delivery`] records `(consumer, source, id)` inside the handler's
//! transaction and answers whether this is the first time, so a redelivered event's effect
//! is applied once.
//!
//! # Several relays, one order
//!
//! Relays may run in several processes for availability, but only one publishes at a time:
//! each round takes a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`, one key
//! per schema) and a relay that does not get it idles until its next poll. That keeps the
//! bus order equal to the outbox order. `FOR UPDATE SKIP LOCKED` would let relays publish
//! batches in parallel (more throughput), but two relays would then race batches onto the bus
//! and events of one aggregate could arrive out of order; we keep order and get throughput
//! from batching instead.
//!
//! The outbox order is the order of ids, drawn when each transaction inserts. Transactions
//! that commit concurrently may become visible out of id order; the relay deletes exactly the
//! ids it published (never "everything up to"), so a late commit is relayed in a later round,
//! never lost. Events enqueued by one writer in successive transactions keep their order.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Pool;
use flotilla_bus::outbox::decode_entry;
use flotilla_bus::{Backend, Error as BusError, Outgoing};
use flotilla_core::CloudEvent;
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;

use crate::{Error, Options};

const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.bus_outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    event      jsonb NOT NULL,
    not_before timestamptz
);
CREATE TABLE IF NOT EXISTS {s}.bus_inbox (
    consumer   text NOT NULL,
    source     text NOT NULL,
    id         text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, id)
);
";

/// The outbox and inbox tables of one schema.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: Pool,
    schema: String,
    lock_key: i64,
}

impl Outbox {
    /// Connects and creates the schema and tables if needed.
    pub async fn open(options: &Options) -> Result<Self, Error> {
        let pool = crate::connect(options)?;
        let client = pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        client
            .batch_execute(&DDL.replace("{s}", &options.schema))
            .await?;
        Ok(Self {
            pool,
            schema: options.schema.clone(),
            lock_key: lock_key(&options.schema),
        })
    }

    /// The pool, for the application's own transactions.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Adds `out` to the outbox; call inside the transaction that makes the business change.
    pub async fn enqueue(&self, tx: &Transaction<'_>, out: &Outgoing) -> Result<(), Error> {
        let sql = format!(
            "INSERT INTO {}.bus_outbox (topic, event, not_before) VALUES ($1, $2, $3)",
            self.schema
        );
        let event = out.event.to_json_value();
        tx.execute(&sql, &[&out.topic.as_str(), &event, &out.not_before])
            .await?;
        Ok(())
    }

    /// Records that `consumer` handled `event`; `true` the first time, `false` on a
    /// redelivery. Call inside the transaction that applies the handler's effect, and skip
    /// the effect on `false`.
    pub async fn first_delivery(
        &self,
        tx: &Transaction<'_>,
        consumer: &str,
        event: &CloudEvent,
    ) -> Result<bool, Error> {
        let sql = format!(
            "INSERT INTO {}.bus_inbox (consumer, source, id) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            self.schema
        );
        let n = tx
            .execute(&sql, &[&consumer, &event.source, &event.id])
            .await?;
        Ok(n == 1)
    }

    /// Forgets inbox entries older than `age` (once redeliveries that old cannot happen);
    /// answers how many.
    pub async fn prune_inbox(&self, age: Duration) -> Result<u64, Error> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let sql = format!(
            "DELETE FROM {}.bus_inbox WHERE handled_at < $1",
            self.schema
        );
        Ok(client.execute(&sql, &[&cutoff]).await?)
    }

    /// A relay from this outbox to `target`, 256 events per publish, polling every 100 ms
    /// when the outbox is empty (or another relay holds the lock).
    pub fn relay(&self, target: Arc<dyn Backend>) -> Relay {
        Relay {
            outbox: self.clone(),
            target,
            batch: 256,
            idle_poll: Duration::from_millis(100),
        }
    }
}

/// A stable key per schema for the relay's advisory lock (FNV-1a: the same in every process).
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flotilla.outbox.".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// Publishes an outbox to a bus backend.
#[derive(Debug, Clone)]
pub struct Relay {
    outbox: Outbox,
    target: Arc<dyn Backend>,
    batch: usize,
    idle_poll: Duration,
}

fn db(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("outbox database: {e}"))
}

impl Relay {
    /// Publishes up to `n` events per round (at least 1).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Publishes up to one batch, oldest first, and deletes it once the publish is durable.
    /// Answers how many events were relayed (0 when the outbox is empty or another relay is
    /// publishing).
    pub async fn relay_once(&self) -> Result<usize, BusError> {
        let mut client = self.outbox.pool.get().await.map_err(db)?;
        let tx = client.transaction().await.map_err(db)?;
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1)",
                &[&self.outbox.lock_key],
            )
            .await
            .map_err(db)?
            .get(0);
        if !locked {
            return Ok(0);
        }
        let (ids, batch) = self.take(&tx).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // A failure from here on rolls the transaction back: the rows stay and are published
        // again next round, where the bus's dedupe drops what did get through.
        self.target.publish(batch).await?;
        let sql = format!(
            "DELETE FROM {}.bus_outbox WHERE id = ANY($1)",
            self.outbox.schema
        );
        tx.execute(&sql, &[&ids]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ids.len())
    }

    async fn take(&self, tx: &Transaction<'_>) -> Result<(Vec<i64>, Vec<Outgoing>), BusError> {
        let limit = i64::try_from(self.batch).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, topic, event, not_before FROM {}.bus_outbox ORDER BY id LIMIT $1",
            self.outbox.schema
        );
        let rows = tx.query(&sql, &[&limit]).await.map_err(db)?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let event: serde_json::Value = row.get(2);
            let json = serde_json::to_vec(&event)
                .map_err(|e| BusError::Backend(format!("outbox entry {id}: {e}")))?;
            batch.push(decode_entry(id, row.get(1), &json, row.get(3))?);
            ids.push(id);
        }
        Ok((ids, batch))
    }

    /// Relays until `shutdown` is cancelled; failures are logged and retried after a second.
    pub async fn run(self, shutdown: CancellationToken) {
        flotilla_bus::outbox::relay_until(shutdown, self.idle_poll, || self.relay_once()).await;
    }
}
