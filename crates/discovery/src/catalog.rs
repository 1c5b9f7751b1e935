//! The registry catalog's storage contract.
//!
//! The registry component keeps its catalog in memory and writes every change through a
//! [`CatalogStore`] so it survives a restart. The contract lives here, in the discovery layer,
//! so the registry (a component) and the storage backends (SQLite, PostgreSQL) can both see it
//! without depending on each other; the binary picks the implementation.
//!
//! Entries are opaque JSON documents keyed by service and instance id: the registry owns their
//! shape (instance, status, check definition), the store only keeps them durably.
//!
//! A store several registry replicas share (PostgreSQL) also implements [`SharedCatalog`]
//! and returns it from [`CatalogStore::shared`]; the registry then takes its indexes from the
//! store and follows the other replicas' changes. See [`shared`].

pub mod shared;
mod shared_suite;

pub use shared::{SharedCatalog, SharedEntry, WriteError};
pub use shared_suite::shared_conformance;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use flotilla_core::ServiceName;

/// A boxed future, so the store can be used as `Arc<dyn CatalogStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stored catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The service the instance belongs to.
    pub service: ServiceName,
    /// The instance id, unique within the service.
    pub id: String,
    /// The registry's JSON document for the instance.
    pub document: String,
}

/// Everything a store holds: the catalog's last index and every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCatalog {
    /// The highest index the catalog handed out; revisions continue above it after a restart,
    /// so a watcher never sees a revision go backwards.
    pub index: u64,
    /// Every stored entry.
    pub entries: Vec<StoredEntry>,
}

/// Why the store failed. The registry answers 503 and does not apply the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog storage failed: {0}")]
pub struct StoreError(pub String);

/// Durable storage for the registry catalog.
///
/// When `put` or `remove` returns `Ok`, the change and the new index are durable: a restart
/// loads them back. Implementations may batch concurrent calls into one transaction.
pub trait CatalogStore: Send + Sync + std::fmt::Debug + 'static {
    /// Loads the whole catalog (at start-up).
    fn load(&self) -> BoxFuture<'_, Result<StoredCatalog, StoreError>>;

    /// Inserts or replaces an entry and records `index` as the catalog's last index.
    fn put(&self, entry: StoredEntry, index: u64) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Removes an entry (absent is fine) and records `index` as the catalog's last index.
    fn remove(
        &self,
        service: ServiceName,
        id: String,
        index: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The replication side, when several registries share this store; `None` (the default)
    /// for a store one registry owns, which then hands out indexes itself.
    fn shared(&self) -> Option<&dyn SharedCatalog> {
        None
    }
}

type Documents = BTreeMap<(ServiceName, String), String>;

/// A store that keeps everything in memory: for tests, and for a registry that need not survive
/// a restart. Clones share the same contents, so a test can "restart" a registry over it.
#[derive(Debug, Clone, Default)]
pub struct MemoryCatalogStore {
    inner: Arc<Mutex<(u64, Documents)>>,
}

impl MemoryCatalogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CatalogStore for MemoryCatalogStore {
    fn load(&self) -> BoxFuture<'_, Result<StoredCatalog, StoreError>> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let catalog = StoredCatalog {
            index: guard.0,
            entries: guard
                .1
                .iter()
                .map(|((service, id), document)| StoredEntry {
                    service: service.clone(),
                    id: id.clone(),
                    document: document.clone(),
                })
                .collect(),
        };
        Box::pin(async move { Ok(catalog) })
    }

    fn put(&self, entry: StoredEntry, index: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 = guard.0.max(index);
        guard.1.insert((entry.service, entry.id), entry.document);
        Box::pin(async { Ok(()) })
    }

    fn remove(
        &self,
        service: ServiceName,
        id: String,
        index: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 = guard.0.max(index);
        guard.1.remove(&(service, id));
        Box::pin(async { Ok(()) })
    }
}

/// Checks that `store` keeps entries and the index across a reopen; every implementation runs
/// it from its own tests. `reopen` must return a fresh handle over the same storage.
pub async fn conformance<S: CatalogStore>(store: S, reopen: impl FnOnce(S) -> S) {
    let svc = |s: &str| ServiceName::new(s).expect("test service names are valid");
    let entry = |s: &str, id: &str, doc: &str| StoredEntry {
        service: svc(s),
        id: id.into(),
        document: doc.into(),
    };
    let empty = store.load().await.expect("load an empty store");
    assert_eq!(empty, StoredCatalog::default(), "a new store is empty");
    store
        .put(entry("users", "u1", "{\"v\":1}"), 1)
        .await
        .expect("put u1");
    store
        .put(entry("users", "u2", "{}"), 2)
        .await
        .expect("put u2");
    store
        .put(entry("orders", "o1", "{}"), 3)
        .await
        .expect("put o1");
    store
        .put(entry("users", "u1", "{\"v\":2}"), 4)
        .await
        .expect("replace u1");
    store
        .remove(svc("orders"), "o1".into(), 5)
        .await
        .expect("remove o1");
    store
        .remove(svc("orders"), "gone".into(), 6)
        .await
        .expect("remove absent");
    let store = reopen(store);
    let mut loaded = store.load().await.expect("load after reopen");
    loaded.entries.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        loaded.index, 6,
        "the last index survives, even from a no-op remove"
    );
    assert_eq!(
        loaded.entries,
        vec![
            entry("users", "u1", "{\"v\":2}"),
            entry("users", "u2", "{}")
        ]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        conformance(MemoryCatalogStore::new(), |s| s.clone()).await;
    }
}
