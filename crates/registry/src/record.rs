//! What the registry stores per instance, and what a registration carries.

use std::collections::BTreeMap;

use flotilla_core::{Scheme, ServiceInstance, ServiceName};
use flotilla_discovery::{Endpoint, HealthStatus};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::check::CheckSpec;

/// One instance as the catalog holds it: the instance, its health and its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance.
    #[serde(flatten)]
    pub instance: ServiceInstance,
    /// Its health as last judged.
    pub status: HealthStatus,
    /// The check the registry runs for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSpec>,
    /// What the last check (or heartbeat note) said.
    #[serde(default)]
    pub output: String,
    /// When the last check result or heartbeat arrived, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_unix_ms: Option<u64>,
    /// Why it is draining, while it is (its `status` is then `draining`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// Catalog index at which the instance was first registered.
    pub create_index: u64,
    /// Catalog index of its last change.
    pub modify_index: u64,
}

/// Who took an instance out of rotation, which decides what brings it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainKind {
    /// The instance itself is leaving (`PUT .../drain`, the SDK's shutdown): a re-registration
    /// of the same id is a new process announcing itself, and ends it.
    Drain,
    /// An operator's Consul maintenance mode: as in Consul it survives re-registration and
    /// ends only when maintenance is disabled or the instance is deregistered.
    Maintenance,
}

/// A drain in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Drain or maintenance.
    pub kind: DrainKind,
    /// Why, as given (Consul's maintenance `reason`).
    pub reason: String,
    /// What the instance's check says meanwhile: checks and heartbeats keep updating it, and
    /// the instance returns to it when the drain ends.
    pub checked: HealthStatus,
}

impl InstanceRecord {
    /// The status its check (or heartbeats) give it, ignoring a drain.
    pub fn checked_status(&self) -> HealthStatus {
        self.drain.as_ref().map_or(self.status, |d| d.checked)
    }

    /// Records a check verdict: the status itself, or the status beneath a drain. Returns
    /// whether anything changed.
    pub(crate) fn set_checked(&mut self, status: HealthStatus) -> bool {
        let slot = match &mut self.drain {
            Some(d) => &mut d.checked,
            // A record stored before drains were tracked: draining stays sticky.
            None if self.status == HealthStatus::Draining => return false,
            None => &mut self.status,
        };
        let changed = *slot != status;
        *slot = status;
        changed
    }

    /// The discovery view: instance and status.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            instance: self.instance.clone(),
            status: self.status,
        }
    }
}

fn default_weight() -> u32 {
    1
}

/// A registration request (`POST /api/v1/registry/instances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Instance id; defaults to `name-address-port`.
    #[serde(default)]
    pub id: Option<String>,
    /// Service name.
    pub name: ServiceName,
    /// Host name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Version the instance runs.
    #[serde(default)]
    pub version: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Weight for balancing; default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The health check to run; none means the instance is trusted as passing.
    #[serde(default)]
    pub check: Option<CheckSpec>,
    /// Status to start in. Default: critical with a check (not routed until it passes),
    /// passing without one.
    #[serde(default)]
    pub status: Option<HealthStatus>,
}

impl Registration {
    /// A registration of `instance` with no check.
    pub fn new(instance: ServiceInstance) -> Self {
        Self {
            id: Some(instance.id),
            name: instance.name,
            address: instance.address,
            port: instance.port,
            scheme: instance.scheme,
            version: instance.version,
            tags: instance.tags,
            metadata: instance.metadata,
            weight: instance.weight,
            check: None,
            status: None,
        }
    }

    /// Validates every field and splits the registration into instance, check and the status
    /// it starts in.
    pub fn into_parts(self) -> Result<(ServiceInstance, Option<CheckSpec>, HealthStatus), Error> {
        let mut instance = ServiceInstance::new(self.name, self.address, self.port);
        if let Some(id) = self.id {
            instance.id = id;
        }
        instance.scheme = self.scheme;
        instance.version = self.version;
        instance.tags = self.tags;
        instance.metadata = self.metadata;
        instance.weight = self.weight;
        instance.validate()?;
        if let Some(check) = &self.check {
            check.validate()?;
        }
        let status = match (self.status, &self.check) {
            (Some(HealthStatus::Draining), _) => {
                return Err(Error::Invalid(
                    "status: an instance cannot register as draining".into(),
                ));
            }
            (Some(s), _) => s,
            (None, Some(_)) => HealthStatus::Critical,
            (None, None) => HealthStatus::Passing,
        };
        Ok((instance, self.check, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckKind;

    fn reg() -> Registration {
        serde_json::from_str(r#"{"name":"users","address":"127.0.0.1","port":8080}"#).unwrap()
    }

    #[test]
    fn a_new_instance_with_a_check_starts_critical_unless_told_otherwise() {
        let mut r = reg();
        r.check = Some(CheckSpec::new(CheckKind::Tcp { address: None }));
        assert_eq!(r.clone().into_parts().unwrap().2, HealthStatus::Critical);
        r.status = Some(HealthStatus::Passing);
        assert_eq!(r.into_parts().unwrap().2, HealthStatus::Passing);
        let (instance, _, status) = reg().into_parts().unwrap();
        assert_eq!(
            (instance.id.as_str(), status),
            ("users-127.0.0.1-8080", HealthStatus::Passing)
        );
    }

    #[test]
    fn bad_fields_are_refused_with_their_name() {
        let mut r = reg();
        r.tags = vec!["x".repeat(600)];
        assert!(r.into_parts().unwrap_err().to_string().contains("tags[0]"));
        let e = serde_json::from_str::<Registration>(r#"{"name":"Bad","address":"h","port":1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("\"Bad\""), "{e}");
        let mut r = reg();
        r.status = Some(HealthStatus::Draining);
        assert!(r.into_parts().is_err());
    }
}
