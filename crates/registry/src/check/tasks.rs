//! The registry's side of check scheduling: starting, stopping and waking each instance's
//! check task, and storing what the tasks find.

use std::sync::Arc;

use flotilla_core::ServiceName;
use flotilla_discovery::HealthStatus;
use tokio::sync::{Notify, SemaphorePermit};

use super::probe::HttpClient;
use super::runner::{self, FirstProbe};
use crate::metrics::Metrics;
use crate::record::InstanceRecord;
use crate::registry::CheckTask;
use crate::{Error, Registry};

impl Registry {
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn http_client(&self) -> &HttpClient {
        &self.inner.client
    }

    pub(crate) async fn check_permit(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed; `None` would only mean "run without a permit".
        self.inner.permits.acquire().await.ok()
    }

    /// Stores a check's verdict; false when the instance is gone (the check task then ends).
    pub(crate) async fn apply_check(
        &self,
        service: &ServiceName,
        id: &str,
        status: HealthStatus,
        output: String,
    ) -> bool {
        let result = self
            .inner
            .catalog
            .update(service, id, false, |r| {
                let mut r = r?.clone();
                r.output.clone_from(&output);
                r.set_checked(status).then_some(r)
            })
            .await;
        match result {
            Ok(_) => {
                self.inner.catalog.note_output(service, id, output);
                true
            }
            Err(Error::NotFound(_)) => false,
            Err(e) => {
                // Keep checking: the next verdict will try to store again.
                tracing::warn!(%service, id, error = %e, "cannot store a health-check result");
                true
            }
        }
    }

    /// Deregisters an instance that stayed critical past its `deregister_after`.
    pub(crate) async fn reap(&self, service: &ServiceName, id: &str) {
        tracing::info!(%service, id, "deregistering an instance critical past deregister_after");
        match self.inner.catalog.deregister(service, id).await {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(%service, id, error = %e, "cannot deregister a critical instance")
            }
        }
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(service.clone(), id.to_owned()));
    }

    /// Starts the check of `record` unless one runs for the same instance and check.
    pub(crate) fn ensure_check(&self, record: &InstanceRecord, first: FirstProbe) {
        let key = (record.instance.name.clone(), record.instance.id.clone());
        let same = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|t| {
                t.basis.0 == record.instance && Some(&t.basis.1) == record.check.as_ref()
            });
        if !same {
            self.start_check(record, first);
        }
    }

    /// Stops every check (the registry stops running).
    pub(crate) fn stop_all_checks(&self) {
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()) = false;
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks.into_values() {
            task.abort.abort();
        }
    }

    pub(crate) fn start_check(&self, record: &InstanceRecord, first: FirstProbe) {
        let key = (record.instance.name.clone(), record.instance.id.clone());
        let running = *self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = tasks.remove(&key) {
            old.abort.abort();
        }
        let (true, Some(spec)) = (running, record.check.clone()) else {
            return;
        };
        let basis = (record.instance.clone(), spec.clone());
        let heartbeat = Arc::new(Notify::new());
        let task = tokio::spawn(runner::run(
            self.clone(),
            key.0.clone(),
            key.1.clone(),
            spec,
            first,
            heartbeat.clone(),
        ));
        tasks.insert(
            key,
            CheckTask {
                abort: task.abort_handle(),
                heartbeat,
                basis,
            },
        );
    }

    pub(crate) fn stop_check(&self, service: &ServiceName, id: &str) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.remove(&(service.clone(), id.to_owned())) {
            task.abort.abort();
        }
    }

    pub(crate) fn notify_heartbeat(&self, service: &ServiceName, id: &str) {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.get(&(service.clone(), id.to_owned())) {
            task.heartbeat.notify_one();
        }
    }
}
