//! The replication side of the catalog contract, for a store that several registries share.
//!
//! A store one registry owns (memory, SQLite) needs only [`CatalogStore`](super::CatalogStore):
//! the registry hands out indexes itself and is the only writer. When replicas share one store,
//! none of them can hand out indexes or trust its in-memory view, so a shared store also
//! implements [`SharedCatalog`]:
//!
//! - **one index for the whole catalog**, drawn by the store inside each write, so indexes are
//!   monotonic across replicas, and committed in index order, so a replica reading "everything
//!   after index N" never skips a change that commits late;
//! - **conditional writes**: a write names the index of the state it was computed from, and
//!   fails with [`WriteError::Conflict`] when another replica changed the instance first (the
//!   caller catches up and recomputes);
//! - **a change feed**: every instance keeps one row with its latest state and index; a
//!   removal leaves a tombstone, so "changes after N" is a read of the rows above N;
//! - **wake-ups** ([`SharedCatalog::notifications`]), a hint that another replica wrote, so
//!   replicas need not poll tightly; a lost hint only delays until the next catch-up read;
//! - **heartbeat times** of TTL checks, kept in the store so a heartbeat any replica accepts
//!   counts for the replica that runs the check;
//! - **replica leases**, so replicas agree on who is alive and can split the health checks.

use std::fmt::Debug;
use std::time::Duration;

use flotilla_core::ServiceName;
use tokio::sync::watch;

use super::{BoxFuture, StoreError};

/// One instance's latest state in a shared store, as the change feed returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// The service the instance belongs to.
    pub service: ServiceName,
    /// The instance id, unique within the service.
    pub id: String,
    /// The registry's JSON document; `None` when the instance was removed (a tombstone).
    pub document: Option<String>,
    /// The index at which the instance was registered (the tombstone's own index once removed).
    pub create_index: u64,
    /// The index of its last change. Authoritative: a document's own copy may be stale.
    pub modify_index: u64,
}

/// Why a conditional write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The instance's stored index is not the expected one: another replica changed it first.
    /// Nothing was written; catch up with [`SharedCatalog::changes_after`] and retry.
    #[error("the instance changed concurrently (stored index {current})")]
    Conflict {
        /// The index the store holds for the instance (0: absent or removed).
        current: u64,
    },
    /// The store failed; whether the write happened is unknown only if the error says so.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A catalog store shared by several registry replicas. See the module docs.
pub trait SharedCatalog: Send + Sync + Debug + 'static {
    /// Writes `document` for instance `id` of `service` (`None` removes it, leaving a
    /// tombstone) if the stored index of the instance is `expected` (0: absent or removed),
    /// under the next catalog-wide index, which it returns. When this returns `Ok(n)`, the
    /// change is durable and every change with an index below `n` is already readable.
    fn write<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
        document: Option<String>,
        expected: u64,
    ) -> BoxFuture<'a, Result<u64, WriteError>>;

    /// Up to `limit` entries (tombstones included) with an index above `after`, in index order.
    /// Entries committed later always have higher indexes, so a reader that continues after
    /// the last index it saw misses nothing.
    fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<SharedEntry>, StoreError>>;

    /// Changes whenever some replica may have written (the value is the highest index heard
    /// of). A hint only: it can be late or lost, so readers also catch up periodically.
    fn notifications(&self) -> watch::Receiver<u64>;

    /// Records a heartbeat of instance `id` now, in the store's clock.
    fn beat<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// How long ago the last heartbeat of instance `id` was recorded, if ever.
    fn since_beat<'a>(
        &'a self,
        service: &'a ServiceName,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Duration>, StoreError>>;

    /// Marks `replica` alive for `lease` from now and returns every replica alive now (itself
    /// included), sorted.
    fn renew<'a>(
        &'a self,
        replica: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Ends `replica`'s lease at once (a clean shutdown), so the others take over without
    /// waiting for it to expire.
    fn leave<'a>(&'a self, replica: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}
