//! Taking instances out of rotation and back: drains (the instance leaving) and Consul
//! maintenance (an operator's decision). See [`DrainKind`] for what ends each.

use flotilla_core::ServiceName;
use flotilla_discovery::HealthStatus;

use crate::record::{Drain, DrainKind, InstanceRecord};
use crate::{Error, Registry};

impl Registry {
    /// Marks an instance draining: discovery stops returning it at once; it stays listed until
    /// deregistered, and a re-registration of the same id ends the drain.
    pub async fn drain(&self, service: &ServiceName, id: &str) -> Result<InstanceRecord, Error> {
        self.take_out(service, id, DrainKind::Drain, "draining".into())
            .await
    }

    /// Consul's maintenance mode: draining with `reason`, kept across re-registrations until
    /// [`Registry::end_drain`] or deregistration.
    pub async fn maintenance(
        &self,
        service: &ServiceName,
        id: &str,
        reason: String,
    ) -> Result<InstanceRecord, Error> {
        self.take_out(service, id, DrainKind::Maintenance, reason)
            .await
    }

    async fn take_out(
        &self,
        service: &ServiceName,
        id: &str,
        kind: DrainKind,
        reason: String,
    ) -> Result<InstanceRecord, Error> {
        self.inner
            .catalog
            .update(service, id, false, |r| {
                let mut r = r?.clone();
                let checked = r.checked_status();
                // A drain never weakens a maintenance (which outlives re-registration).
                let in_maintenance = r
                    .drain
                    .as_ref()
                    .is_some_and(|d| d.kind == DrainKind::Maintenance);
                if in_maintenance && kind == DrainKind::Drain {
                    return None;
                }
                let drain = Some(Drain {
                    kind,
                    reason: reason.clone(),
                    checked,
                });
                if r.drain == drain && r.status == HealthStatus::Draining {
                    return None;
                }
                r.drain = drain;
                r.status = HealthStatus::Draining;
                Some(r)
            })
            .await
    }

    /// Ends a drain or maintenance: the instance returns to the status its check gives it.
    /// An instance that is not draining is left as it is.
    pub async fn end_drain(
        &self,
        service: &ServiceName,
        id: &str,
    ) -> Result<InstanceRecord, Error> {
        self.inner
            .catalog
            .update(service, id, false, |r| {
                let r = r?;
                if r.status != HealthStatus::Draining {
                    return None;
                }
                // A record stored before drains were tracked has no checked status: its check
                // (if any) decides again from critical.
                let unknown = if r.check.is_some() {
                    HealthStatus::Critical
                } else {
                    HealthStatus::Passing
                };
                Some(InstanceRecord {
                    status: r.drain.as_ref().map_or(unknown, |d| d.checked),
                    drain: None,
                    ..r.clone()
                })
            })
            .await
    }
}
