//! [`Registry`]: the handle everything else calls — registration, health updates, discovery
//! reads, watches — and the owner of the check tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_core::{Clock, ServiceInstance, ServiceName, SystemClock};
use flotilla_discovery::catalog::CatalogStore;
use flotilla_discovery::{Discovery, HealthStatus, Query, ServiceSet};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Slot};
use crate::check::CheckSpec;
use crate::check::probe::{self, HttpClient};
use crate::check::runner::FirstProbe;
use crate::metrics::Metrics;
use crate::record::{InstanceRecord, Registration};
use crate::replica::{Replica, StopOnDrop};
use crate::{Error, Options};

type Key = (ServiceName, String);

/// A running check task, the handle that wakes it on a heartbeat, and what it was started
/// for (a change to either restarts it).
#[derive(Debug)]
pub(crate) struct CheckTask {
    pub(crate) abort: AbortHandle,
    pub(crate) heartbeat: Arc<Notify>,
    pub(crate) basis: (ServiceInstance, CheckSpec),
}

#[derive(Debug)]
pub(crate) struct Inner {
    options: Options,
    pub(crate) catalog: Catalog,
    pub(crate) tasks: Mutex<HashMap<Key, CheckTask>>,
    pub(crate) running: Mutex<bool>,
    pub(crate) permits: Semaphore,
    pub(crate) client: HttpClient,
    pub(crate) metrics: Metrics,
    pub(crate) replica: Replica,
    prometheus: Mutex<prometheus_client::registry::Registry>,
}

/// A service's summary in the service list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: ServiceName,
    /// The service's revision.
    pub revision: u64,
    /// Instances by status.
    pub instances: usize,
    /// Instances passing or warning.
    pub routable: usize,
    /// Union of the instances' tags.
    pub tags: Vec<String>,
}

/// The registry: cheap to clone, all clones share one catalog.
#[derive(Debug, Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

impl Registry {
    /// Opens the registry over `store` (loading the stored catalog), with the system clock.
    pub async fn new(options: Options, store: Arc<dyn CatalogStore>) -> Result<Self, Error> {
        Self::with_clock(options, store, Arc::new(SystemClock)).await
    }

    /// As [`Registry::new`], with the clock used for check timestamps.
    pub async fn with_clock(
        options: Options,
        store: Arc<dyn CatalogStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        options.validate()?;
        let catalog = Catalog::load(store, clock).await?;
        let mut prometheus = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut prometheus);
        let inner = Inner {
            replica: Replica::new(&options.node_name),
            permits: Semaphore::new(options.max_concurrent_checks),
            options,
            catalog,
            tasks: Mutex::default(),
            running: Mutex::new(false),
            client: probe::http_client(),
            metrics,
            prometheus: Mutex::new(prometheus),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Runs the health checks of every instance until `shutdown` is cancelled. Instances loaded
    /// from storage keep their stored status until their check says otherwise.
    ///
    /// Over a shared catalog it also follows the other replicas' changes, renews this
    /// replica's lease, and runs only the checks this replica owns; on shutdown it ends its
    /// lease so the others take them over at once. Dropping the future instead stops
    /// everything without ending the lease, as a crash would.
    pub async fn run(&self, shutdown: CancellationToken) {
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let mut guard = StopOnDrop {
            registry: self.clone(),
            tasks: Vec::new(),
        };
        if self.is_shared() {
            let tasks = self.start_replica().await;
            guard.tasks = tasks.iter().map(|t| t.abort_handle()).collect();
        } else {
            for slot in self.inner.catalog.all_slots().into_values() {
                for record in slot.records() {
                    // Spread the catalog's checks over their intervals: a restart must not
                    // fire thousands of probes on one tick.
                    self.start_check(&record, FirstProbe::Jittered);
                }
            }
        }
        shutdown.cancelled().await;
        drop(guard);
        self.leave().await;
    }

    /// Registers (or replaces) an instance and starts its check.
    pub async fn register(&self, registration: Registration) -> Result<InstanceRecord, Error> {
        let explicit = registration.status.is_some();
        let (instance, check, status) = registration.into_parts()?;
        let before = self
            .record(&instance.name, &instance.id)
            .map(|r| r.modify_index);
        let record = self
            .inner
            .catalog
            .register(instance, check, status, explicit)
            .await?;
        // An unchanged re-registration (Consul clients and agents repeat them) keeps the
        // running check, its counters and its deregister timer. A new or changed one is probed
        // at once, so a healthy instance is routable within one probe, not one interval.
        // Over a shared catalog the owner starts it, when the change reaches it.
        if before != Some(record.modify_index) && !self.is_shared() {
            self.start_check(&record, FirstProbe::Now);
        }
        Ok(record)
    }

    /// Removes an instance and stops its check.
    pub async fn deregister(
        &self,
        service: &ServiceName,
        id: &str,
    ) -> Result<InstanceRecord, Error> {
        let record = self.inner.catalog.deregister(service, id).await?;
        self.stop_check(service, id);
        Ok(record)
    }

    /// A heartbeat (TTL pass, or warn/fail as the instance reports itself): sets the status at
    /// once and restarts the TTL. A drained instance stays draining; the heartbeat sets the
    /// status it returns to when the drain ends.
    pub async fn heartbeat(
        &self,
        service: &ServiceName,
        id: &str,
        status: HealthStatus,
        output: Option<String>,
    ) -> Result<InstanceRecord, Error> {
        if status == HealthStatus::Draining {
            return Err(Error::Invalid(
                "status: use drain to mark an instance draining".into(),
            ));
        }
        let now = self.inner.catalog.now_ms();
        let note = output.clone();
        let record = self
            .inner
            .catalog
            .update(service, id, false, |r| {
                let mut r = r?.clone();
                let moved = r.set_checked(status);
                if let Some(o) = &output {
                    r.output.clone_from(o);
                }
                r.last_check_unix_ms = Some(now);
                moved.then_some(r)
            })
            .await?;
        self.share_beat(service, id).await?;
        let output = note.unwrap_or_else(|| record.output.clone());
        self.inner.catalog.note_output(service, id, output);
        self.notify_heartbeat(service, id);
        Ok(record)
    }

    /// The service's revision and the instances matching `query`, in id order.
    pub fn instances(&self, service: &ServiceName, query: &Query) -> (u64, Vec<InstanceRecord>) {
        match self.inner.catalog.existing_slot(service) {
            None => (0, Vec::new()),
            Some(slot) => {
                let records = slot
                    .records()
                    .into_iter()
                    .filter(|r| query.matches(&r.endpoint()));
                (slot.revision(), records.collect())
            }
        }
    }

    /// One instance.
    pub fn record(&self, service: &ServiceName, id: &str) -> Option<InstanceRecord> {
        self.inner.catalog.existing_slot(service)?.record(id)
    }

    /// Finds the service of instance `id`.
    pub fn find_by_id(&self, id: &str) -> Option<ServiceName> {
        self.inner.catalog.find_by_id(id)
    }

    /// Every service with at least one instance, by name.
    pub fn services(&self) -> Vec<ServiceSummary> {
        let mut out: Vec<_> = self
            .inner
            .catalog
            .all_slots()
            .into_iter()
            .filter_map(|(name, slot)| summary(name, &slot))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The catalog-wide index: the highest revision of any service.
    pub fn index(&self) -> u64 {
        self.inner.catalog.index()
    }

    /// Wakes on any change to any service (for catalog-wide blocking queries).
    pub fn watch_index(&self) -> watch::Receiver<u64> {
        self.inner.catalog.subscribe_index()
    }

    /// Every change as it happens (for the all-services event stream).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<crate::Change> {
        self.inner.catalog.subscribe_changes()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut counts = [
            (HealthStatus::Passing, 0),
            (HealthStatus::Warning, 0),
            (HealthStatus::Critical, 0),
            (HealthStatus::Draining, 0),
        ];
        let mut watchers = 0;
        for slot in self.inner.catalog.all_slots().into_values() {
            watchers += slot.watchers();
            for r in slot.records() {
                if let Some(c) = counts.iter_mut().find(|(s, _)| *s == r.status) {
                    c.1 += 1;
                }
            }
        }
        self.inner.metrics.set_gauges(counts, watchers);
        let mut text = String::new();
        let registry = self
            .inner
            .prometheus
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "cannot encode registry metrics");
        }
        text
    }

    pub(crate) fn slot(&self, service: &ServiceName) -> Arc<Slot> {
        self.inner.catalog.slot(service)
    }
}

fn summary(name: ServiceName, slot: &Slot) -> Option<ServiceSummary> {
    let records = slot.records();
    if records.is_empty() {
        return None;
    }
    let mut tags: Vec<String> = records
        .iter()
        .flat_map(|r| r.instance.tags.clone())
        .collect();
    tags.sort();
    tags.dedup();
    Some(ServiceSummary {
        name,
        revision: slot.revision(),
        instances: records.len(),
        routable: records.iter().filter(|r| r.status.is_routable()).count(),
        tags,
    })
}

/// In-process discovery straight from the catalog: what `flotilla up` hands the gateway.
impl Discovery for Registry {
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet> {
        self.inner.catalog.slot(service).subscribe()
    }
}
