//! The event store on PostgreSQL (feature `eventstore`).
//!
//! # Why positions are assigned under a lock
//!
//! A sequence hands out numbers at `nextval`, not at commit: transaction A may draw position 7,
//! transaction B position 8, and B commit first. A reader continuing from "position > last"
//! would see 8, move on, and never see 7. This store prevents that at the source: an append
//! takes a transaction-scoped advisory lock (one key per schema) before it reads the stream's
//! version and draws positions, and holds it until its commit. PostgreSQL makes a commit
//! visible before it releases the transaction's locks, so the next appender draws higher
//! positions only after the lower ones are visible (or rolled back, which leaves a gap readers
//! simply pass). Positions therefore become visible in order and `read_all` needs no
//! gap-tracking, for every reader, in any process, with plain SQL.
//!
//! We chose this over a gap-aware reader (tracking `pg_current_snapshot()` and waiting out
//! in-flight transactions before passing a gap) because it keeps every reader — subscriptions,
//! `psql`, the CLI, third-party projectors — correct without protocol, and because the cost
//! lands where it is cheapest to pay: appends in one schema are serialized, and batching
//! (several events per append) recovers throughput. docs/eventstore.md gives the figures.
//!
//! The lock also serializes expected-version checks, so no append can slip between a version
//! check and its insert.

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
use tokio::sync::watch;

use sql::{Sql, clamp, pg};

/// The name `flotilla-cli` wires the store under.
pub type PostgresEventStore = PgEventStore;

/// The event store in one PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PgEventStore {
    pool: Pool,
    sql: Arc<Sql>,
    lock_key: i64,
    head: Arc<watch::Sender<Position>>,
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
            lock_key: schema::lock_key(&options.schema),
            head: Arc::new(watch::Sender::new(last as u64)),
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
    /// caller commits; until then every other append in this schema waits, so keep the
    /// transaction short. Call [`announce`](Self::announce) after committing to wake local
    /// subscribers at once (otherwise they notice within the poll interval).
    pub async fn append_in(
        &self,
        tx: &Transaction<'_>,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        validate_batch(events)?;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let (lock, by_ids, state) = tokio::try_join!(
            tx.prepare_cached(&self.sql.lock),
            tx.prepare_cached(&self.sql.by_ids),
            tx.prepare_cached(&self.sql.stream_state),
        )
        .map_err(pg)?;
        // Pipelined: one round trip. The session runs them in order, so both reads happen
        // under the lock.
        let name = stream.as_str();
        let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.lock_key];
        let id_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let state_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
        let (_, found, state) = tokio::try_join!(
            tx.execute(&lock, &lock_params),
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
            Plan::Write { first_version } => self.insert(tx, stream, first_version, events).await,
        }
    }

    /// The advisory-lock key appends in this schema serialize on (for operators reading
    /// `pg_locks`, and for tests).
    pub fn append_lock_key(&self) -> i64 {
        self.lock_key
    }

    /// Tells local subscribers that everything up to `position` is visible.
    pub fn announce(&self, position: Position) {
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
        first: Version,
        events: &[NewEvent],
    ) -> Result<AppendResult, Error> {
        let n = events.len() as i64;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
        let metadata = events
            .iter()
            .map(|e| serde_json::to_value(&e.metadata))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::storage)?;
        let last_version = first + events.len() as u64 - 1;
        let (s, cat, first_i) = (stream.as_str(), stream.category(), first as i64);
        let (insert, upsert) = tokio::try_join!(
            tx.prepare_cached(&self.sql.insert),
            tx.prepare_cached(&self.sql.upsert_stream),
        )
        .map_err(pg)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&ids, &s, &cat, &types, &data, &metadata, &n, &first_i];
        let last_i = last_version as i64;
        let upsert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&s, &last_i];
        let (rows, _) = tokio::try_join!(
            tx.query(&insert, &params),
            tx.execute(&upsert, &upsert_params),
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

/// What the head poller holds: it stops when the store is dropped.
struct WeakStore {
    pool: Pool,
    sql: Arc<Sql>,
    head: std::sync::Weak<watch::Sender<Position>>,
}

async fn poll_head(store: WeakStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(head) = store.head.upgrade() else {
            return;
        };
        let Ok(client) = store.pool.get().await else {
            continue;
        };
        if let Ok(row) = client.query_one(&store.sql.head, &[]).await {
            let last = row.get::<_, i64>(0) as u64;
            head.send_if_modified(|h| std::mem::replace(h, (*h).max(last)) < last);
        }
    }
}

mod store_impl;
