//! The registry catalog on SQLite (feature `catalog`): implements
//! [`CatalogStore`](flotilla_discovery::catalog::CatalogStore). Every change goes through the
//! shared group-commit writer, so `put`/`remove` return only once the change is durable.

use flotilla_core::ServiceName;
use flotilla_discovery::catalog::{
    BoxFuture, CatalogStore, StoreError, StoredCatalog, StoredEntry,
};
use rusqlite::{Connection, params};

use crate::{Database, Error};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS registry_instances (
    service  TEXT NOT NULL,
    id       TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (service, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO registry_meta (key, value) VALUES ('index', 0);
";

/// The catalog's tables in a [`Database`].
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    db: Database,
}

impl SqliteCatalog {
    /// Creates the catalog's tables if needed (blocking: call at start-up).
    pub fn open(db: Database) -> Result<Self, Error> {
        db.writer()
            .write_blocking(|c| c.execute_batch(SCHEMA).map_err(Error::from))?;
        Ok(Self { db })
    }
}

fn store_error(e: Error) -> StoreError {
    StoreError(e.to_string())
}

fn bump_index(c: &Connection, index: u64) -> Result<(), Error> {
    let index =
        i64::try_from(index).map_err(|_| Error::CommitFailed("catalog index overflow".into()))?;
    c.execute(
        "UPDATE registry_meta SET value = max(value, ?1) WHERE key = 'index'",
        [index],
    )?;
    Ok(())
}

fn load(c: &Connection) -> Result<StoredCatalog, Error> {
    let index: i64 = c.query_row(
        "SELECT value FROM registry_meta WHERE key = 'index'",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = c.prepare("SELECT service, id, document FROM registry_instances")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
    let mut entries = Vec::new();
    for row in rows {
        let (service, id, document) = row?;
        // A row the registry wrote always holds a valid name; anything else is corruption.
        let service = ServiceName::new(service)
            .map_err(|e| Error::CommitFailed(format!("stored catalog row is corrupt: {e}")))?;
        entries.push(StoredEntry {
            service,
            id,
            document,
        });
    }
    Ok(StoredCatalog {
        index: u64::try_from(index).unwrap_or(0),
        entries,
    })
}

impl CatalogStore for SqliteCatalog {
    fn load(&self) -> BoxFuture<'_, Result<StoredCatalog, StoreError>> {
        Box::pin(async move { self.db.reads().read(load).await.map_err(store_error) })
    }

    fn put(&self, entry: StoredEntry, index: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.db
                .writer()
                .write(move |c| {
                    c.execute(
                        "INSERT INTO registry_instances (service, id, document) VALUES (?1, ?2, ?3)
                         ON CONFLICT (service, id) DO UPDATE SET document = excluded.document",
                        params![entry.service.as_str(), entry.id, entry.document],
                    )?;
                    bump_index(c, index)
                })
                .await
                .map_err(store_error)
        })
    }

    fn remove(
        &self,
        service: ServiceName,
        id: String,
        index: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.db
                .writer()
                .write(move |c| {
                    c.execute(
                        "DELETE FROM registry_instances WHERE service = ?1 AND id = ?2",
                        params![service.as_str(), id],
                    )?;
                    bump_index(c, index)
                })
                .await
                .map_err(store_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[tokio::test]
    async fn sqlite_catalog_passes_the_conformance_suite_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let store = SqliteCatalog::open(Database::open(Options::new(&path)).unwrap()).unwrap();
        flotilla_discovery::catalog::conformance(store, |old| {
            drop(old);
            SqliteCatalog::open(Database::open(Options::new(&path)).unwrap()).unwrap()
        })
        .await;
    }
}
