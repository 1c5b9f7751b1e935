//! The in-memory catalog: one slot per service with its own revision and watch channel, every
//! change written through the [`CatalogStore`] before it is applied or announced.
//!
//! Writes to one service are serialized by that service's async lock, so the store sees them in
//! order; writes to different services proceed (and group-commit) together. Readers never wait
//! for a write: they read the slot's current map.
//!
//! Over a store several replicas share, writes and the changes other replicas make take the
//! path in [`shared`] instead.

mod shared;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use flotilla_core::{Clock, ServiceInstance, ServiceName};
use flotilla_discovery::catalog::{CatalogStore, StoredEntry};
use flotilla_discovery::{HealthStatus, ServiceSet};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::Error;
use crate::check::CheckSpec;
use crate::record::{DrainKind, InstanceRecord};

/// A change, as the all-services event stream announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The service that changed.
    pub service: ServiceName,
    /// Its revision after the change.
    pub revision: u64,
    /// The instance that changed.
    pub id: String,
    /// Its status after the change; absent when it was deregistered.
    pub status: Option<HealthStatus>,
}

/// One service: its instances, its write lock, and its watchers' channel.
#[derive(Debug)]
pub(crate) struct Slot {
    write: tokio::sync::Mutex<()>,
    records: Mutex<BTreeMap<String, InstanceRecord>>,
    tx: watch::Sender<ServiceSet>,
}

impl Slot {
    fn new() -> Self {
        Self {
            write: tokio::sync::Mutex::new(()),
            records: Mutex::new(BTreeMap::new()),
            tx: watch::channel(ServiceSet::default()).0,
        }
    }

    /// Every record, in id order.
    pub(crate) fn records(&self) -> Vec<InstanceRecord> {
        self.lock().values().cloned().collect()
    }

    /// One record.
    pub(crate) fn record(&self, id: &str) -> Option<InstanceRecord> {
        self.lock().get(id).cloned()
    }

    /// The service's current revision.
    pub(crate) fn revision(&self) -> u64 {
        self.tx.borrow().revision
    }

    /// A receiver that wakes on changes to this service only.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ServiceSet> {
        self.tx.subscribe()
    }

    /// How many receivers watch this service.
    pub(crate) fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, InstanceRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, revision: u64) {
        let endpoints: Vec<_> = self.lock().values().map(InstanceRecord::endpoint).collect();
        self.tx.send_modify(|set| {
            set.revision = revision.max(set.revision);
            set.endpoints = endpoints.into();
        });
    }
}

/// Slots by service, with the size at which the next sweep of idle ones runs.
#[derive(Debug)]
struct Slots {
    map: HashMap<ServiceName, Arc<Slot>>,
    sweep_at: usize,
}

/// The smallest map size that triggers a sweep.
const MIN_SWEEP: usize = 64;

impl Default for Slots {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

impl Slots {
    /// Drops slots that hold no instance, have no watcher and are used by no one else: a
    /// blocking query or watch for a name that never registered leaves one behind, and
    /// without this any client could grow the map without bound. Runs when the map has doubled
    /// since the last sweep, so its cost is amortised over the insertions.
    fn sweep_if_due(&mut self) {
        if self.map.len() < self.sweep_at {
            return;
        }
        self.map.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.watchers() > 0 || !slot.lock().is_empty()
        });
        self.sweep_at = (self.map.len() * 2).max(MIN_SWEEP);
    }
}

/// The catalog.
#[derive(Debug)]
pub(crate) struct Catalog {
    slots: Mutex<Slots>,
    index: AtomicU64,
    index_tx: watch::Sender<u64>,
    /// With a shared store: the index of the last change applied from it.
    cursor: tokio::sync::Mutex<u64>,
    events: broadcast::Sender<Change>,
    store: Arc<dyn CatalogStore>,
    clock: Arc<dyn Clock>,
}

impl Catalog {
    /// Loads the catalog from `store`. Instances keep the status they were stored with.
    pub(crate) async fn load(
        store: Arc<dyn CatalogStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        if store.shared().is_some() {
            let catalog = Self::empty(store, clock, 0);
            catalog.sync().await?;
            return Ok(catalog);
        }
        let stored = store.load().await?;
        let catalog = Self::empty(store, clock, stored.index);
        for entry in stored.entries {
            let record: InstanceRecord = serde_json::from_str(&entry.document).map_err(|e| {
                Error::Invalid(format!(
                    "stored instance {}/{} is unreadable: {e}",
                    entry.service, entry.id
                ))
            })?;
            catalog.slot(&entry.service).lock().insert(entry.id, record);
        }
        for slot in catalog.all_slots().into_values() {
            let revision = slot
                .lock()
                .values()
                .map(|r| r.modify_index)
                .max()
                .unwrap_or(0);
            slot.publish(revision);
        }
        Ok(catalog)
    }

    fn empty(store: Arc<dyn CatalogStore>, clock: Arc<dyn Clock>, index: u64) -> Self {
        Self {
            slots: Mutex::default(),
            index: AtomicU64::new(index),
            index_tx: watch::channel(index).0,
            cursor: tokio::sync::Mutex::new(0),
            events: broadcast::channel(1024).0,
            store,
            clock,
        }
    }

    /// The slot of `service`, created empty if unknown (so watchers can wait for it).
    pub(crate) fn slot(&self, service: &ServiceName) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.map.get(service) {
            return slot.clone();
        }
        slots.sweep_if_due();
        let slot = Arc::new(Slot::new());
        slots.map.insert(service.clone(), slot.clone());
        slot
    }

    /// How many slots the catalog holds (services plus names being waited for).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    /// The slot of `service` if it was ever seen.
    pub(crate) fn existing_slot(&self, service: &ServiceName) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(service)
            .cloned()
    }

    /// Every slot, including empty ones.
    pub(crate) fn all_slots(&self) -> HashMap<ServiceName, Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .clone()
    }

    /// The catalog-wide index (highest revision handed out).
    pub(crate) fn index(&self) -> u64 {
        *self.index_tx.borrow()
    }

    /// Wakes on any change to any service.
    pub(crate) fn subscribe_index(&self) -> watch::Receiver<u64> {
        self.index_tx.subscribe()
    }

    /// Every change, as it happens.
    pub(crate) fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    /// Finds the service of instance `id` (Consul addresses instances by id alone).
    pub(crate) fn find_by_id(&self, id: &str) -> Option<ServiceName> {
        self.all_slots()
            .into_iter()
            .find(|(_, slot)| slot.lock().contains_key(id))
            .map(|(name, _)| name)
    }

    /// Registers or replaces an instance. Re-registering an unchanged instance and check with
    /// no explicit status keeps its current status, so periodic re-registration does not flap.
    /// A re-registration ends a [`DrainKind::Drain`] (a restarted process claims its id again)
    /// but not a Consul maintenance, which outlives re-registration as it does in Consul.
    pub(crate) async fn register(
        &self,
        instance: ServiceInstance,
        check: Option<CheckSpec>,
        status: HealthStatus,
        explicit_status: bool,
    ) -> Result<InstanceRecord, Error> {
        let service = instance.name.clone();
        let id = instance.id.clone();
        self.update(&service, &id, true, move |existing| {
            let (instance, check) = (instance.clone(), check.clone());
            let same = existing.is_some_and(|r| r.instance == instance && r.check == check);
            let ends_drain = existing.is_some_and(ends_on_register);
            if same && !explicit_status && !ends_drain {
                return None;
            }
            let mut record = existing.cloned().unwrap_or_else(|| InstanceRecord {
                instance: instance.clone(),
                status,
                check: None,
                output: String::new(),
                last_check_unix_ms: None,
                drain: None,
                create_index: 0,
                modify_index: 0,
            });
            let checked = if same && !explicit_status {
                record.checked_status()
            } else {
                status
            };
            if ends_drain {
                record.drain = None;
                record.status = checked;
            }
            record.instance = instance;
            record.check = check;
            record.set_checked(checked);
            Some(record)
        })
        .await
    }

    /// Applies `change` to instance `id` of `service` and, when it returns a new record, stores
    /// and announces it. Returns the record as it is afterwards; `NotFound` when the instance
    /// does not exist and `create` is false.
    pub(crate) async fn update(
        &self,
        service: &ServiceName,
        id: &str,
        create: bool,
        change: impl FnMut(Option<&InstanceRecord>) -> Option<InstanceRecord>,
    ) -> Result<InstanceRecord, Error> {
        if self.shared().is_some() {
            let slot = self.slot(service);
            let _write = slot.write.lock().await;
            return self.update_shared(&slot, service, id, create, change).await;
        }
        let mut change = change;
        let slot = if create {
            Some(self.slot(service))
        } else {
            self.existing_slot(service)
        };
        let slot = slot.ok_or_else(|| not_found(service, id))?;
        let _write = slot.write.lock().await;
        let current = slot.lock().get(id).cloned();
        if current.is_none() && !create {
            return Err(not_found(service, id));
        }
        let Some(mut next) = change(current.as_ref()) else {
            return current.ok_or_else(|| not_found(service, id));
        };
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        next.modify_index = index;
        if next.create_index == 0 {
            next.create_index = index;
        }
        let document = serde_json::to_string(&next)
            .map_err(|e| Error::Invalid(format!("instance cannot be encoded: {e}")))?;
        let entry = StoredEntry {
            service: service.clone(),
            id: id.to_owned(),
            document,
        };
        self.store.put(entry, index).await?;
        slot.lock().insert(id.to_owned(), next.clone());
        self.announce(&slot, service, id, index, Some(next.status));
        Ok(next)
    }

    /// Sets the last check output and time without a new revision (output alone does not wake
    /// watchers, so chatty checks cannot cause watch storms).
    pub(crate) fn note_output(&self, service: &ServiceName, id: &str, output: String) {
        let now = self.now_ms();
        if let Some(slot) = self.existing_slot(service)
            && let Some(r) = slot.lock().get_mut(id)
        {
            r.output = output;
            r.last_check_unix_ms = Some(now);
        }
    }

    /// Removes an instance; `NotFound` when it does not exist.
    pub(crate) async fn deregister(
        &self,
        service: &ServiceName,
        id: &str,
    ) -> Result<InstanceRecord, Error> {
        if self.shared().is_some() {
            let slot = self.slot(service);
            let _write = slot.write.lock().await;
            return self.deregister_shared(&slot, service, id).await;
        }
        let slot = self
            .existing_slot(service)
            .ok_or_else(|| not_found(service, id))?;
        let _write = slot.write.lock().await;
        let current = slot
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(service, id))?;
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        self.store
            .remove(service.clone(), id.to_owned(), index)
            .await?;
        slot.lock().remove(id);
        self.announce(&slot, service, id, index, None);
        Ok(current)
    }

    /// The current time in Unix milliseconds, from the injected clock.
    pub(crate) fn now_ms(&self) -> u64 {
        let since = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    fn announce(
        &self,
        slot: &Slot,
        service: &ServiceName,
        id: &str,
        index: u64,
        status: Option<HealthStatus>,
    ) {
        slot.publish(index);
        self.raise_index(index);
        // No subscribers is fine: the stream is optional.
        let _ = self.events.send(Change {
            service: service.clone(),
            revision: slot.revision(),
            id: id.to_owned(),
            status,
        });
    }
}

impl Catalog {
    /// Raises the catalog-wide index to `index`, waking catalog-wide watchers if it grew.
    fn raise_index(&self, index: u64) {
        self.index.fetch_max(index, Ordering::SeqCst);
        self.index_tx.send_if_modified(|i| {
            let changed = index > *i;
            *i = (*i).max(index);
            changed
        });
    }
}

/// Whether registering over `record` ends its drain: a plain drain (or one stored before
/// drain kinds were recorded) does, a maintenance does not.
fn ends_on_register(record: &InstanceRecord) -> bool {
    match &record.drain {
        Some(d) => d.kind == DrainKind::Drain,
        None => record.status == HealthStatus::Draining,
    }
}

fn not_found(service: &ServiceName, id: &str) -> Error {
    Error::NotFound(format!("instance {id:?} of service {service}"))
}

#[cfg(test)]
mod tests {
    use flotilla_core::SystemClock;
    use flotilla_discovery::catalog::MemoryCatalogStore;

    use super::*;

    fn name(i: usize) -> ServiceName {
        ServiceName::new(format!("ghost-{i}")).unwrap()
    }

    #[tokio::test]
    async fn slots_of_names_nobody_registers_or_watches_are_reclaimed() {
        let catalog = Catalog::load(Arc::new(MemoryCatalogStore::new()), Arc::new(SystemClock))
            .await
            .unwrap();
        let watched = catalog.slot(&name(0)).subscribe();
        let held = catalog.slot(&name(1));
        // A client polls 10,000 names that never register; each wait ends and lets go.
        for i in 2..10_000 {
            drop(catalog.slot(&name(i)).subscribe());
        }
        assert!(
            catalog.slot_count() <= 2 * MIN_SWEEP + 2,
            "{} slots kept for names nobody uses",
            catalog.slot_count()
        );
        assert!(
            catalog.existing_slot(&name(0)).is_some(),
            "a watched slot stays"
        );
        assert!(
            Arc::ptr_eq(&catalog.slot(&name(1)), &held),
            "a held slot stays"
        );
        drop(watched);
    }
}
