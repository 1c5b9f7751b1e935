//! The catalog over a store several replicas share: writes are conditional on the index the
//! change was computed from and take their index from the store; every change, this replica's
//! own included, reaches the in-memory catalog through one path ([`Catalog::sync`]), in index
//! order, so revisions and the catalog index only ever grow on every replica.

use flotilla_core::ServiceName;
use flotilla_discovery::catalog::{SharedCatalog, SharedEntry, WriteError};

use super::{Catalog, Slot, not_found};
use crate::Error;
use crate::record::InstanceRecord;

/// Changes read per query while catching up.
const PAGE: usize = 500;
/// Conflicting attempts before a write gives up: each conflict means another replica changed
/// the same instance meanwhile, so this many in a row is a storm, not bad luck.
const ATTEMPTS: usize = 16;

impl Catalog {
    /// The replication side of the store, when it is shared.
    pub(crate) fn shared(&self) -> Option<&dyn SharedCatalog> {
        self.store.shared()
    }

    /// Applies every change the store holds above the last one applied. Concurrent callers
    /// queue: the second finds the work done.
    pub(crate) async fn sync(&self) -> Result<(), Error> {
        self.sync_until(u64::MAX).await
    }

    /// Catches up until index `target` is applied (or the store holds nothing more).
    pub(crate) async fn sync_until(&self, target: u64) -> Result<(), Error> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        let mut cursor = self.cursor.lock().await;
        while *cursor < target {
            let page = shared.changes_after(*cursor, PAGE).await?;
            for entry in &page {
                self.apply_remote(entry);
                *cursor = entry.modify_index;
            }
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Puts one stored state into memory and announces it.
    fn apply_remote(&self, entry: &SharedEntry) {
        let index = entry.modify_index;
        let slot = self.slot(&entry.service);
        let Some(document) = &entry.document else {
            let removed = slot.lock().remove(&entry.id).is_some();
            match removed {
                true => self.announce(&slot, &entry.service, &entry.id, index, None),
                false => self.raise_index(index),
            }
            return;
        };
        let mut record: InstanceRecord = match serde_json::from_str(document) {
            Ok(r) => r,
            Err(e) => {
                // One unreadable row (a newer release's shape?) must not stop replication.
                tracing::error!(service = %entry.service, id = entry.id, error = %e,
                    "skipping an unreadable catalog entry");
                self.raise_index(index);
                return;
            }
        };
        record.modify_index = index;
        record.create_index = entry.create_index;
        let status = record.status;
        slot.lock().insert(entry.id.clone(), record);
        self.announce(&slot, &entry.service, &entry.id, index, Some(status));
    }

    /// Writes the result of `change` through the shared store, recomputing it on the fresh
    /// state when another replica changed the instance first; `None` from `change` means
    /// "nothing to do". Returns the record as written (or as it is, when unchanged).
    pub(crate) async fn update_shared(
        &self,
        slot: &Slot,
        service: &ServiceName,
        id: &str,
        create: bool,
        mut change: impl FnMut(Option<&InstanceRecord>) -> Option<InstanceRecord>,
    ) -> Result<InstanceRecord, Error> {
        self.sync_if_unknown(slot, id, create).await?;
        for _ in 0..ATTEMPTS {
            let current = slot.record(id);
            if current.is_none() && !create {
                return Err(not_found(service, id));
            }
            let Some(mut next) = change(current.as_ref()) else {
                return current.ok_or_else(|| not_found(service, id));
            };
            let expected = current.as_ref().map_or(0, |r| r.modify_index);
            let document = serde_json::to_string(&next)
                .map_err(|e| Error::Invalid(format!("instance cannot be encoded: {e}")))?;
            let Some(index) = self
                .write_shared(service, id, Some(document), expected)
                .await?
            else {
                continue;
            };
            next.modify_index = index;
            next.create_index = current.map_or(index, |r| r.create_index);
            return Ok(next);
        }
        Err(contended(service, id))
    }

    /// Removes an instance through the shared store; `NotFound` when it does not exist.
    pub(crate) async fn deregister_shared(
        &self,
        slot: &Slot,
        service: &ServiceName,
        id: &str,
    ) -> Result<InstanceRecord, Error> {
        self.sync_if_unknown(slot, id, false).await?;
        for _ in 0..ATTEMPTS {
            let current = slot.record(id).ok_or_else(|| not_found(service, id))?;
            let written = self
                .write_shared(service, id, None, current.modify_index)
                .await?;
            if written.is_some() {
                return Ok(current);
            }
        }
        Err(contended(service, id))
    }

    /// One conditional write, then the catch-up that applies it (and everything before it).
    /// `None` on a conflict, after catching up, so the caller recomputes.
    async fn write_shared(
        &self,
        service: &ServiceName,
        id: &str,
        document: Option<String>,
        expected: u64,
    ) -> Result<Option<u64>, Error> {
        let shared = self.shared().expect("only called with a shared store");
        match shared.write(service, id, document, expected).await {
            Ok(index) => {
                if let Err(e) = self.sync_until(index).await {
                    // Written and durable; the follower applies it at its next catch-up.
                    tracing::warn!(error = %e, "cannot read back a catalog write");
                }
                Ok(Some(index))
            }
            Err(WriteError::Conflict { .. }) => {
                self.sync().await?;
                Ok(None)
            }
            Err(WriteError::Store(e)) => Err(e.into()),
        }
    }

    /// An instance this replica has not heard of may have been registered on another one a
    /// moment ago (a client registering on one replica and heart-beating on the next): catch
    /// up once before answering "not found".
    async fn sync_if_unknown(&self, slot: &Slot, id: &str, create: bool) -> Result<(), Error> {
        if !create && slot.record(id).is_none() {
            self.sync().await?;
        }
        Ok(())
    }
}

fn contended(service: &ServiceName, id: &str) -> Error {
    Error::Store(flotilla_discovery::catalog::StoreError(format!(
        "instance {id:?} of service {service} kept changing on other replicas; try again"
    )))
}
