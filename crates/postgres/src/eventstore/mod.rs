//! The event store on PostgreSQL (feature `eventstore`).
//!
//! # How readers never skip a late commit, without a global write lock
//!
//! Transactions commit in any order, so "the highest visible position" is no promise that
//! lower positions are final: with a plain sequence, A draws 7, B draws 8, B commits first, and
//! a reader continuing after 8 never sees 7. This store derives positions from transaction
//! ids instead: an append in transaction `x` writes `x << TX_BITS | n`, `n` counting the
//! transaction's events from 1. Readers ask their snapshot for `xmin`, the oldest transaction
//! still in flight (`pg_snapshot_xmin(pg_current_snapshot())`), and return only positions
//! below `xmin << TX_BITS`:
//!
//! - every transaction below `xmin` has finished, so each of its events is visible to the same
//!   snapshot (committed) or will never exist (rolled back);
//! - every transaction that can still commit has an id of at least `xmin`, so each position it
//!   holds or will draw is at or above the bound.
//!
//! Nothing below the bound can appear later, so a reader that continues after the last
//! position it saw never skips one, and `head` is the highest position below the bound. Appends
//! to different streams never wait for each other: each append locks only its own stream (an
//! advisory lock on a hash of the name, held to commit), which keeps the expected-version check
//! and the insert together.
//!
//! Why not a sequence plus an `xid8` column filtered by `xid < xmin`: a transaction can take
//! its id long before it draws a position (`append_in` after other writes, or just a slow
//! statement), so an old, committed transaction may hold a higher position than a younger one
//! still in flight, and the reader would pass the younger one's position. Making the id the
//! high part of the position is what makes "below `xmin`" and "below a position" the same set.
//!
//! The cost: `read_all` and `head` lag behind the oldest writing transaction of the whole
//! PostgreSQL cluster (any database), so a long transaction holds every reader back until it
//! ends. `read_all` waits up to [`READ_WAIT`] for short ones (so a read that follows an append
//! sees it); past that it returns what is safe and the subscription waits on `head`. Positions
//! are large (`xid << 20`) and sparse, and one transaction can append at most 1,048,575 events.

mod reads;
mod schema;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use flotilla_core::StreamId;
use flotilla_eventstore::memory::check_snapshot_version;
use flotilla_eventstore::model::{validate_batch, validate_limit};
use flotilla_eventstore::plan::{Plan, StreamState, plan_append};
use flotilla_eventstore::store::validate_subscriber;
use flotilla_eventstore::{
    AppendResult, Direction, Error, EventStore, ExpectedVersion, Filter, NewEvent, Position,
    ReadAll, ReadStream, RecordedEvent, Snapshot, StreamInfo, Version,
};
use tokio::sync::{Notify, watch};

pub use reads::READ_WAIT;
use sql::{Sql, clamp, pg};

/// The name `flotilla-cli` wires the store under.
pub type PostgresEventStore = PgEventStore;

/// The event store in one PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PgEventStore {
    pool: Pool,
    sql: Arc<Sql>,
    stream_seed: i64,
    head: Arc<watch::Sender<Position>>,
    /// Wakes the head poller at once (after a commit) instead of at its next tick.
    wake: Arc<Notify>,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::storage(format!("no database connection: {e}"))
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Postgres(e) => pg(e),
            crate::Error::InvalidOption(m) => Error::InvalidInput(m),
            other => Error::storage(other),
        }
    }
}

impl PgEventStore {
    /// Connects, creates the schema and tables if needed, reads the head, and starts the
    /// task that notices appends made by other processes.
    pub async fn open(options: &crate::Options) -> Result<Self, Error> {
        let pool = crate::connect(options)?;
        let client = pool.get().await.map_err(unavailable)?;
        client
            .batch_execute(&schema::ddl(&options.schema))
            .await
            .map_err(pg)?;
        let sql = Arc::new(Sql::new(&options.schema));
        let last: i64 = client.query_one(&sql.head, &[]).await.map_err(pg)?.get(0);
        let store = Self {
            pool,
            sql,
            stream_seed: schema::stream_lock_seed(&options.schema),
            head: Arc::new(watch::Sender::new(last as u64)),
            wake: Arc::new(Notify::new()),
        };
        let every = Duration::from_millis(options.poll_interval_ms);
        tokio::spawn(poll_head(store.clone_weak(), every));
        Ok(store)
    }

    /// The connection pool, for callers that append inside their own transaction with
    /// [`append_in`](Self::append_in).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Appends inside the caller's transaction, so events commit atomically with the caller's
    /// own changes (a state table, an outbox). The events are durable and visible only when the
    /// caller commits; until then other appends to the same stream wait, and readers of `$all`
    /// stop below this transaction's positions, so keep the transaction short. Call
    /// [`announce`](Self::announce) after committing to wake local subscribers at once
    /// (otherwise they notice within the poll interval).
    pub async fn append_in(
        &self,
        tx: &Transaction<'_>,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        validate_batch(events)?;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let (lock, slot, by_ids, state) = tokio::try_join!(
            tx.prepare_cached(&self.sql.stream_lock),
            tx.prepare_cached(&self.sql.tx_slot),
            tx.prepare_cached(&self.sql.by_ids),
            tx.prepare_cached(&self.sql.stream_state),
        )
        .map_err(pg)?;
        // Pipelined: one round trip. The session runs them in order, so the reads happen
        // under the stream's lock.
        let name = stream.as_str();
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&name, &self.stream_seed];
        let id_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let state_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
        let (_, slot, found, state) = tokio::try_join!(
            tx.execute(&lock, &lock_params),
            tx.query_one(&slot, &state_params),
            tx.query(&by_ids, &id_params),
            tx.query_opt(&state, &state_params),
        )
        .map_err(pg)?;
        let found = found
            .iter()
            .map(sql::event)
            .collect::<Result<Vec<_>, _>>()?;
        let stored: Vec<_> = events
            .iter()
            .map(|e| found.iter().find(|f| f.id == e.id).cloned())
            .collect();
        let state = state.map_or_else(StreamState::default, |r| StreamState {
            version: Some(r.get::<_, i64>(0) as u64),
            deleted: r.get(1),
        });
        match plan_append(stream, expected, state, events, &stored)? {
            Plan::AlreadyStored(r) => Ok(r),
            Plan::Write { first_version } => {
                in_stream_order(stream, slot.get(0), slot.get(2))?;
                let first = first_position(slot.get(0), slot.get(1), events.len())?;
                self.insert(tx, stream, (first, first_version), events)
                    .await
            }
        }
    }

    /// Tells this process's subscribers that an append committed: the head is re-read at
    /// once rather than at the next poll. (A committed position is not announced directly:
    /// it is safe to pass only once every older transaction has finished.)
    pub fn announce(&self) {
        self.wake.notify_one();
    }

    /// Raises the head to `position`, which the caller knows to be final.
    fn raise_head(&self, position: Position) {
        self.head.send_if_modified(|h| {
            let grew = position > *h;
            *h = (*h).max(position);
            grew
        });
    }

    fn clone_weak(&self) -> WeakStore {
        WeakStore {
            pool: self.pool.clone(),
            sql: self.sql.clone(),
            head: Arc::downgrade(&self.head),
            wake: self.wake.clone(),
        }
    }

    async fn stream_state(
        &self,
        tx: &Transaction<'_>,
        stream: &StreamId,
    ) -> Result<StreamState, Error> {
        let stmt = tx
            .prepare_cached(&self.sql.stream_state)
            .await
            .map_err(pg)?;
        let row = tx.query_opt(&stmt, &[&stream.as_str()]).await.map_err(pg)?;
        Ok(row.map_or_else(StreamState::default, |r| StreamState {
            version: Some(r.get::<_, i64>(0) as u64),
            deleted: r.get(1),
        }))
    }

    async fn insert(
        &self,
        tx: &Transaction<'_>,
        stream: &StreamId,
        (first_position, first): (i64, Version),
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        let Columns {
            ids,
            types,
            data,
            metadata,
        } = Columns::of(events)?;
        let last_version = first + events.len() as u64 - 1;
        let (s, cat, first_i) = (stream.as_str(), stream.category(), first as i64);
        let (insert, create) = tokio::try_join!(
            tx.prepare_cached(&self.sql.insert),
            tx.prepare_cached(&self.sql.create_stream),
        )
        .map_err(pg)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &ids,
            &s,
            &cat,
            &types,
            &data,
            &metadata,
            &first_position,
            &first_i,
        ];
        let last_i = last_version as i64;
        // The stream's row, if this is its first append (a no-op otherwise).
        let create_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&s, &last_i];
        let (rows, _) = tokio::try_join!(
            tx.query(&insert, &params),
            tx.execute(&create, &create_params),
        )
        .map_err(pg)?;
        let last_position = rows.iter().map(|r| r.get::<_, i64>(0)).max().unwrap_or(0);
        Ok(AppendResult {
            first_version: first,
            last_version,
            last_position: last_position as u64,
        })
    }

    async fn live_version(
        &self,
        tx: &Transaction<'_>,
        stream: &StreamId,
    ) -> Result<Option<Version>, Error> {
        let state = self.stream_state(tx, stream).await?;
        if state.deleted {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        Ok(state.version)
    }
}

/// A batch as the array parameters of an insert.
struct Columns<'a> {
    ids: Vec<uuid::Uuid>,
    types: Vec<&'a str>,
    data: Vec<&'a serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl<'a> Columns<'a> {
    fn of(events: &'a [NewEvent]) -> Result<Self, Error> {
        Ok(Self {
            ids: events.iter().map(|e| e.id).collect(),
            types: events.iter().map(|e| e.event_type.as_str()).collect(),
            data: events.iter().map(|e| &e.data).collect(),
            metadata: events
                .iter()
                .map(|e| serde_json::to_value(&e.metadata))
                .collect::<Result<_, _>>()
                .map_err(Error::storage)?,
        })
    }
}

/// What the head poller holds: it stops when the store is dropped.
struct WeakStore {
    pool: Pool,
    sql: Arc<Sql>,
    head: std::sync::Weak<watch::Sender<Position>>,
    wake: Arc<Notify>,
}

/// The first position of an append of `n` events in the transaction whose positions start
/// above `base`, `used` of them taken by earlier appends in the same transaction.
fn first_position(base: i64, used: i64, n: usize) -> Result<i64, Error> {
    let total = used.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
    if total > schema::MAX_PER_TX {
        return Err(Error::InvalidInput(format!(
            "one transaction can append at most {} events; this append would make it {total}",
            schema::MAX_PER_TX
        )));
    }
    Ok(base + used + 1)
}

/// Refuses to append below the stream's last event: that happens only in a transaction that
/// took its id before a younger one appended to the same stream (`append_in` after other
/// writes). Its events would come before that append in `$all` while following it in the
/// stream. `append` never meets it: it takes its id after the stream's lock.
fn in_stream_order(stream: &StreamId, base: i64, last: Option<i64>) -> Result<(), Error> {
    match last {
        Some(last) if last >= base + schema::TX_SPAN => Err(Error::Storage {
            message: format!(
                "stream {stream} has an event from a younger transaction (position {last}); \
                 retry this transaction"
            ),
            retryable: true,
        }),
        _ => Ok(()),
    }
}

/// Re-reads the head every `every`, and at once when woken by a commit in this process.
async fn poll_head(store: WeakStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = store.wake.notified() => {}
        }
        let Some(head) = store.head.upgrade() else {
            return;
        };
        let Ok(client) = store.pool.get().await else {
            continue;
        };
        // Prepared once per connection: under a stream of appends it runs after nearly every
        // commit.
        let Ok(stmt) = client.prepare_cached(&store.sql.head).await else {
            continue;
        };
        if let Ok(row) = client.query_one(&stmt, &[]).await {
            let last = row.get::<_, i64>(0) as u64;
            head.send_if_modified(|h| std::mem::replace(h, (*h).max(last)) < last);
        }
    }
}

mod store_impl;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_continue_within_a_transaction_up_to_its_span() {
        let base = 7 * schema::TX_SPAN;
        assert_eq!(first_position(base, 0, 3).ok(), Some(base + 1));
        assert_eq!(first_position(base, 3, 2).ok(), Some(base + 4));
        let last = usize::try_from(schema::MAX_PER_TX).unwrap_or(usize::MAX);
        assert_eq!(first_position(base, 0, last).ok(), Some(base + 1));
        let over = first_position(base, 1, last);
        assert!(
            matches!(&over, Err(Error::InvalidInput(m)) if m.contains("1048576")),
            "{over:?}"
        );
    }
}
