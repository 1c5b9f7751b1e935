//! The registry catalog on PostgreSQL (feature `catalog`): the storage contract
//! ([`CatalogStore`]) and its replication side ([`SharedCatalog`]), so several registry
//! replicas can share one catalog.
//!
//! # How replicas stay in step
//!
//! Each instance has one row holding its latest document and the index of its last change; a
//! removal keeps the row as a tombstone (document `NULL`), so "every change after index N" is
//! a read of the rows above N. Writes go through one SQL function that locks the catalog's
//! counter row, checks the instance's expected index, draws the next index and notifies the
//! other replicas; the lock is held to commit, so indexes commit in order and a replica
//! continuing after the last index it saw never skips a late commit. (A sequence would not
//! do: it hands out numbers before commit, in no commit order.) The price is that catalog
//! writes are serialized across replicas — one short transaction each, which registrations
//! and status changes afford. Heartbeats of TTL checks and replica leases have tables of their
//! own and never draw an index.
//!
//! Tombstones are kept: one row per instance id ever removed.

mod listen;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use flotilla_core::ServiceName;
use flotilla_discovery::catalog::{
    BoxFuture, CatalogStore, SharedCatalog, SharedEntry, StoreError, StoredCatalog, StoredEntry,
    WriteError,
};
use tokio::sync::watch;
use tokio_postgres::Row;
use tokio_util::sync::{CancellationToken, DropGuard};

use schema::Sql;

/// The registry catalog in one PostgreSQL schema. Clones share the pool and the listener.
#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: Pool,
    sql: Arc<Sql>,
    channel: Arc<str>,
    wakes: watch::Sender<u64>,
    /// Stops the listener when the last clone is dropped.
    _listener: Arc<DropGuard>,
}

impl PgCatalog {
    /// Connects, creates the schema and tables if needed, and starts listening for the other
    /// replicas' writes.
    pub async fn open(options: &crate::Options) -> Result<Self, crate::Error> {
        let pool = crate::connect(options)?;
        let client = pool
            .get()
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))?;
        client.batch_execute(&schema::ddl(&options.schema)).await?;
        let channel = schema::channel(&options.schema);
        let wakes = watch::Sender::new(0);
        let stop = CancellationToken::new();
        tokio::spawn(listen::run(
            options.url.clone(),
            channel.clone(),
            wakes.clone(),
            stop.clone(),
        ));
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&options.schema)),
            channel: channel.into(),
            wakes,
            _listener: Arc::new(stop.drop_guard()),
        })
    }

    /// The connection pool (tests drop their schema through it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError(format!("no database connection: {e}")))
    }
}

fn store_error(e: tokio_postgres::Error) -> StoreError {
    StoreError(format!("postgres: {}", crate::Error::Postgres(e)))
}

fn index_param(index: u64) -> Result<i64, StoreError> {
    i64::try_from(index).map_err(|_| StoreError(format!("catalog index {index} overflows")))
}

fn service_of(name: String) -> Result<ServiceName, StoreError> {
    // A row the registry wrote always holds a valid name; anything else is corruption.
    ServiceName::new(name).map_err(|e| StoreError(format!("stored catalog row is corrupt: {e}")))
}

fn shared_entry(row: &Row) -> Result<SharedEntry, StoreError> {
    let index = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    Ok(SharedEntry {
        service: service_of(row.get(0))?,
        id: row.get(1),
        document: row.get(2),
        create_index: index(3),
        modify_index: index(4),
    })
}

impl CatalogStore for PgCatalog {
    fn load(&self) -> BoxFuture<'_, Result<StoredCatalog, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let index: i64 = client
                .query_one(&self.sql.load_index, &[])
                .await
                .map_err(store_error)?
                .get(0);
            let rows = client
                .query(&self.sql.load_entries, &[])
                .await
                .map_err(store_error)?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                entries.push(StoredEntry {
                    service: service_of(row.get(0))?,
                    id: row.get(1),
                    document: row.get(2),
                });
            }
            let index = u64::try_from(index).unwrap_or(0);
            Ok(StoredCatalog { index, entries })
        })
    }

    fn put(&self, entry: StoredEntry, index: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let index = index_param(index)?;
            let service = entry.service.as_str();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&service, &entry.id, &entry.document, &index];
            let client = self.client().await?;
            client
                .execute(&self.sql.put, &params)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn remove(
        &self,
        service: ServiceName,
        id: String,
        index: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let index = index_param(index)?;
            let client = self.client().await?;
            client
                .execute(&self.sql.remove, &[&service.as_str(), &id, &index])
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn shared(&self) -> Option<&dyn SharedCatalog> {
        Some(self)
    }
}

impl SharedCatalog for PgCatalog {
    fn write<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        document: Option<String>,
        expected: u64,
    ) -> BoxFuture<'a, Result<u64, WriteError>> {
        Box::pin(async move {
            let expected = index_param(expected)?;
            let channel: &str = &self.channel;
            let client = self.client().await?;
            let outcome: i64 = client
                .query_one(
                    &self.sql.write,
                    &[&service.as_str(), &id, &document, &expected, &channel],
                )
                .await
                .map_err(store_error)?
                .get(0);
            // The function answers the new index, or minus the stored one on a conflict.
            if outcome <= 0 {
                let current = u64::try_from(-outcome).unwrap_or(0);
                return Err(WriteError::Conflict { current });
            }
            let index = u64::try_from(outcome).unwrap_or(0);
            listen::raise(&self.wakes, index);
            Ok(index)
        })
    }

    fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedEntry>, StoreError>> {
        Box::pin(async move {
            let after = index_param(after)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let client = self.client().await?;
            let rows = client
                .query(&self.sql.changes_after, &[&after, &limit])
                .await
                .map_err(store_error)?;
            rows.iter().map(shared_entry).collect()
        })
    }

    fn notifications(&self) -> watch::Receiver<u64> {
        self.wakes.subscribe()
    }

    fn beat<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(&self.sql.beat, &[&service.as_str(), &id])
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn since_beat<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(&self.sql.since_beat, &[&service.as_str(), &id])
                .await
                .map_err(store_error)?;
            Ok(row.map(|r| Duration::try_from_secs_f64(r.get(0)).unwrap_or_default()))
        })
    }

    fn renew<'a>(
        &'a self,
        replica: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(&self.sql.renew, &[&replica, &lease.as_secs_f64()])
                .await
                .map_err(store_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn leave<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(&self.sql.leave, &[&replica])
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }
}
