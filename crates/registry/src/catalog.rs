//! The in-memory catalog: one slot per service with its own revision and watch channel, every
//! change written through the [`CatalogStore`] before it is applied or announced.
//!
//! Writes to one service are serialized by that service's async lock, so the store sees them in
//! order; writes to different services proceed (and group-commit) together. Readers never wait
//! for a write: they read the slot's current map.

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
use crate::record::InstanceRecord;

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

/// The catalog.
#[derive(Debug)]
pub(crate) struct Catalog {
    slots: Mutex<HashMap<ServiceName, Arc<Slot>>>,
    index: AtomicU64,
    index_tx: watch::Sender<u64>,
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
        let stored = store.load().await?;
        let catalog = Self {
            slots: Mutex::default(),
            index: AtomicU64::new(stored.index),
            index_tx: watch::channel(stored.index).0,
            events: broadcast::channel(1024).0,
            store,
            clock,
        };
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

    /// The slot of `service`, created empty if unknown (so watchers can wait for it).
    pub(crate) fn slot(&self, service: &ServiceName) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(service.clone())
            .or_insert_with(|| Arc::new(Slot::new()))
            .clone()
    }

    /// The slot of `service` if it was ever seen.
    pub(crate) fn existing_slot(&self, service: &ServiceName) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
    }

    /// Every slot, including empty ones.
    pub(crate) fn all_slots(&self) -> HashMap<ServiceName, Arc<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
            let same = existing.is_some_and(|r| r.instance == instance && r.check == check);
            if same && !explicit_status {
                return None;
            }
            let mut record = existing.cloned().unwrap_or_else(|| InstanceRecord {
                instance: instance.clone(),
                status,
                check: None,
                output: String::new(),
                last_check_unix_ms: None,
                create_index: 0,
                modify_index: 0,
            });
            record.instance = instance;
            record.check = check;
            if !same || explicit_status {
                record.status = status;
            }
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
        change: impl FnOnce(Option<&InstanceRecord>) -> Option<InstanceRecord>,
    ) -> Result<InstanceRecord, Error> {
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
        self.index_tx.send_if_modified(|i| {
            let changed = index > *i;
            *i = (*i).max(index);
            changed
        });
        // No subscribers is fine: the stream is optional.
        let _ = self.events.send(Change {
            service: service.clone(),
            revision: slot.revision(),
            id: id.to_owned(),
            status,
        });
    }
}

fn not_found(service: &ServiceName, id: &str) -> Error {
    Error::NotFound(format!("instance {id:?} of service {service}"))
}
