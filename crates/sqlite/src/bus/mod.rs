//! The embedded event-bus backend (feature `bus`): [`flotilla_bus::Backend`] on SQLite.
//!
//! Every mutation (publish, receive's lease, ack, nack, dead-letter, replay) runs through the
//! database's group-commit [`Writer`](crate::Writer), so each answers only after its
//! transaction is durable (`synchronous=FULL` unless the database was opened with relaxed
//! durability) while concurrent callers share one fsync. Delays, backoff and leases are one
//! `visible_at` column: a crashed consumer's events come back when their lease time passes,
//! even across a restart. The whole contract is honoured (`Capabilities::ALL`).

mod dlq;
mod export;
mod lease;
pub mod outbox;
mod publish;
mod schema;

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use flotilla_bus::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error as BusError, Failure, GroupInfo,
    GroupName, GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};
use tokio::sync::Notify;

pub use export::PendingDelivery;

use crate::{Database, Error};

/// How the embedded bus behaves.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// How long a published `(source, id)` is remembered for dedupe (default 2 minutes).
    pub dedupe_window: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            dedupe_window: Duration::from_secs(120),
        }
    }
}

/// The SQLite event-bus backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    /// Declared groups, read by publish inside the writer thread to route events; changed
    /// only inside the writer thread too, so routing and declaration never race.
    groups: Arc<RwLock<Vec<GroupSpec>>>,
    changed: Notify,
    next_lease: Arc<AtomicI64>,
    options: BusOptions,
    last_prune: AtomicI64,
}

impl SqliteBus {
    /// Creates the bus's tables if needed and loads the declared groups. Blocks the calling
    /// thread on the writer: call at start-up.
    pub fn open(db: Database, options: BusOptions) -> Result<Self, BusError> {
        let (groups, max_lease) = db
            .writer()
            .write_blocking(|c| {
                c.execute_batch(schema::SCHEMA)?;
                let groups = dlq::load_groups(c)?;
                let lease: i64 = c.query_row(
                    "SELECT coalesce(max(lease), 0) FROM bus_deliveries",
                    [],
                    |r| r.get(0),
                )?;
                Ok::<_, Error>((groups, lease))
            })
            .map_err(map_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                groups: Arc::new(RwLock::new(groups)),
                changed: Notify::new(),
                next_lease: Arc::new(AtomicI64::new(max_lease + 1)),
                options,
                last_prune: AtomicI64::new(0),
            }),
        })
    }

    fn db(&self) -> &Database {
        &self.inner.db
    }

    fn wake(&self) {
        self.inner.changed.notify_waiters();
    }
}

/// Milliseconds since the Unix epoch, the unit of every time column.
pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Storage failures as bus errors: a commit that did not happen or a stopped writer is
/// transient (retry; with the same ids, dedupe makes it safe); anything else is a failure.
pub(crate) fn map_err(e: Error) -> BusError {
    match e {
        Error::WriterStopped | Error::CommitFailed(_) => BusError::Unavailable(e.to_string()),
        Error::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            BusError::Unavailable(e.to_string())
        }
        other => BusError::Backend(other.to_string()),
    }
}

#[async_trait]
impl Backend for SqliteBus {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), BusError> {
        dlq::declare_group(self, spec).await
    }

    async fn delete_group(&self, group: &GroupName) -> Result<(), BusError> {
        dlq::delete_group(self, group).await
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, BusError> {
        let out = publish::publish(self, batch).await?;
        self.wake();
        Ok(out)
    }

    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        lease::receive(self, group, max, lease, wait).await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), BusError> {
        lease::ack(self, receipt).await?;
        self.wake();
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), BusError> {
        lease::nack(self, receipt, delay).await?;
        self.wake();
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), BusError> {
        lease::dead_letter(self, receipt, failure).await?;
        self.wake();
        Ok(())
    }

    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, BusError> {
        dlq::list(self, query).await
    }

    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, BusError> {
        dlq::get(self, id).await
    }

    async fn dlq_replay(&self, id: &str) -> Result<(), BusError> {
        dlq::replay(self, id).await?;
        self.wake();
        Ok(())
    }

    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, BusError> {
        dlq::purge(self, group, ids).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        dlq::topics(self).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, BusError> {
        dlq::groups(self).await
    }
}
