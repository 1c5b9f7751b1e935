//! The event store on SQLite (feature `eventstore`).
//!
//! Appends run on the shared group-commit [`Writer`](crate::Writer): the appends in a batch
//! run together (one savepoint, statements prepared once; see `append`), so many concurrent
//! appends share one fsync, and an append is answered only once its batch is durable. Because the one writer
//! thread assigns positions and commits batches in order, a position is visible only after
//! every lower one: readers may simply continue from the last position they saw.
//!
//! Reads use the read pool (WAL readers never wait for the writer). New appends are announced
//! on [`EventStore::head`] by this process; appends by another process on the same file are
//! picked up by subscribers within `Options::poll_interval`.

mod append;
mod job;
mod raw;
mod rows;
mod schema;
mod store_impl;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::memory::check_snapshot_version;
use flotilla_eventstore::model::{validate_batch, validate_limit};
use flotilla_eventstore::store::validate_subscriber;
use flotilla_eventstore::{
    AppendResult, Direction, Error, EventStore, ExpectedVersion, Filter, NewEvent, Position,
    ReadAll, ReadStream, RecordedEvent, Snapshot, StreamInfo, Version,
};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use crate::Database;
pub use raw::{RawEvent, RawJson};
use rows::{COLUMNS, db};

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Sqlite(e) => db(e),
            other => Error::storage(other),
        }
    }
}

/// The event store on a [`Database`].
#[derive(Debug, Clone)]
pub struct SqliteEventStore {
    db: Database,
    head: Arc<watch::Sender<Position>>,
}

impl SqliteEventStore {
    /// Creates the tables if needed and reads the current head. `poll_interval` is how often
    /// the head is re-read from the file, for appends made by other processes (`None`: never).
    pub async fn open(db: Database, poll_interval: Option<Duration>) -> Result<Self, Error> {
        let last = db
            .writer()
            .write(|c| {
                c.execute_batch(schema::SCHEMA).map_err(db_err)?;
                schema::last_position(c).map_err(db_err)
            })
            .await?;
        let store = Self {
            db,
            head: Arc::new(watch::Sender::new(last)),
        };
        if let Some(every) = poll_interval {
            tokio::spawn(poll_head(
                store.db.clone(),
                Arc::downgrade(&store.head),
                every,
            ));
        }
        Ok(store)
    }

    /// Runs `f` as a job of the shared writer; corruption SQLite reports during it makes the
    /// writer refuse every later write.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.db
            .writer()
            .write(job::job(f))
            .await
            .map_err(|e| e.error)
    }

    fn advance_head(&self, to: Position) {
        self.head.send_if_modified(|h| {
            let grew = to > *h;
            *h = (*h).max(to);
            grew
        });
    }

    async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let out = self.db.reads().read(move |c| Ok(f(c))).await;
        out.map_err(Error::from)?
    }
}

fn db_err(e: rusqlite::Error) -> Error {
    db(e)
}

async fn poll_head(db: Database, head: std::sync::Weak<watch::Sender<Position>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(head) = head.upgrade() else { return };
        let last = db.reads().read(|c| Ok(schema::last_position(c)?)).await;
        if let Ok(last) = last {
            head.send_if_modified(|h| std::mem::replace(h, (*h).max(last)) < last);
        }
    }
}

fn live_version(c: &Connection, stream: &StreamId) -> Result<Option<Version>, Error> {
    let state = rows::stream_state(c, stream).map_err(db)?;
    if state.deleted {
        return Err(Error::StreamDeleted {
            stream: stream.clone(),
        });
    }
    Ok(state.version)
}

/// One row of [`COLUMNS`] mapped to what a read returns (typed or raw).
type MapRow<T> = fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>;

fn read_stream_rows<T>(
    c: &Connection,
    stream: &StreamId,
    read: ReadStream,
    map: MapRow<T>,
) -> Result<Vec<T>, Error> {
    live_version(c, stream)?;
    let (cmp, order) = match read.direction {
        Direction::Forward => (">=", "ASC"),
        Direction::Backward => ("<=", "DESC"),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM es_events WHERE stream = ?1 AND version {cmp} ?2 \
         ORDER BY version {order} LIMIT ?3"
    );
    let mut stmt = c.prepare_cached(&sql).map_err(db)?;
    let rows = stmt.query_map(
        params![stream.as_str(), clamp(read.from), clamp(read.limit as u64)],
        map,
    );
    rows.and_then(Iterator::collect).map_err(db)
}

fn read_all_rows<T>(c: &Connection, read: &ReadAll, map: MapRow<T>) -> Result<Vec<T>, Error> {
    let (clause, value) = match &read.filter {
        Filter::All => ("", None),
        Filter::Category(cat) => ("category = ?3 AND", Some(cat.as_str())),
        Filter::EventType(ty) => ("type = ?3 AND", Some(ty.as_str())),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM es_events WHERE {clause} position > ?1 \
         ORDER BY position LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql).map_err(db)?;
    let (after, limit) = (clamp(read.after), clamp(read.limit as u64));
    let rows = match value {
        None => stmt.query_map(params![after, limit], map),
        Some(v) => stmt.query_map(params![after, limit, v], map),
    };
    rows.and_then(Iterator::collect).map_err(db)
}

/// A listed stream; version 0 is a stream deleted before it was ever written.
fn stream_info(stream: String, version: i64, deleted: bool) -> Result<StreamInfo, Error> {
    Ok(StreamInfo {
        stream: StreamId::new(stream).map_err(Error::storage)?,
        version: (version > 0).then_some(version as u64),
        deleted,
    })
}

/// SQLite integers are signed: clamp "everything" (`u64::MAX`) to the largest it stores.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
