//! The discovery contract (layer L1).
//!
//! How a caller — the gateway, the SDK's `ServiceClient`, the saga orchestrator — finds the
//! instances of a service. The contract is deliberately local: [`Discovery::watch`] hands out
//! a `tokio::sync::watch` receiver over a cached [`ServiceSet`], so resolving an instance on a
//! request path is a memory read, never a network hop. Implementations keep that cache fresh
//! (the registry client through its watch stream; [`StaticDiscovery`] by hand).
//!
//! This crate owns the health vocabulary ([`HealthStatus`]) and instance filters ([`Query`]);
//! it does not own the catalog, health checking or any transport: those live in
//! `flotilla-registry`.

pub mod catalog;
mod query;
mod static_discovery;

use std::fmt;
use std::sync::Arc;

use flotilla_core::{ServiceInstance, ServiceName};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use query::{Query, QueryError, TagMatch};
pub use static_discovery::StaticDiscovery;

/// An instance's health as the registry last judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Checks pass: route to it.
    Passing,
    /// Degraded but serving (an HTTP check answered 429): routable unless a caller asks for
    /// passing only.
    Warning,
    /// Failing or not yet checked: never routed to.
    #[default]
    Critical,
    /// Shutting down: finishing in-flight work, taking no new work.
    Draining,
}

impl HealthStatus {
    /// Whether default discovery routes to an instance in this state.
    pub fn is_routable(self) -> bool {
        matches!(self, Self::Passing | Self::Warning)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Draining => "draining",
        })
    }
}

/// An instance together with its current health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The instance.
    #[serde(flatten)]
    pub instance: ServiceInstance,
    /// Its health.
    pub status: HealthStatus,
}

/// Every known instance of one service at one revision.
///
/// `revision` grows with every change to this service (and only this service), so a watcher
/// can tell whether it has seen a set before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSet {
    /// Per-service revision; 0 means "never seen".
    pub revision: u64,
    /// All instances, whatever their health.
    pub endpoints: Arc<[Endpoint]>,
}

impl ServiceSet {
    /// The instances a default caller may route to (passing or warning).
    pub fn routable(&self) -> impl Iterator<Item = &ServiceInstance> {
        self.endpoints
            .iter()
            .filter(|e| e.status.is_routable())
            .map(|e| &e.instance)
    }

    /// The instances that match `query`.
    pub fn select<'a>(&'a self, query: &'a Query) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints.iter().filter(move |e| query.matches(e))
    }

    /// The routable instance with this id, if any (the seed's `getServiceUrl(name, id)`).
    pub fn routable_by_id(&self, id: &str) -> Option<&ServiceInstance> {
        self.routable().find(|i| i.id == id)
    }

    /// A routable instance chosen by weighted round robin: call with an increasing `turn`
    /// (a counter the caller keeps) and each instance is picked `weight` times per cycle.
    /// Instances with weight 0 are never picked. For smarter balancing use the resilience
    /// crate's load balancers.
    pub fn pick_weighted(&self, turn: u64) -> Option<&ServiceInstance> {
        let total: u64 = self.routable().map(|i| u64::from(i.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut slot = turn % total;
        self.routable().find(|i| {
            let w = u64::from(i.weight);
            if slot < w {
                return true;
            }
            slot -= w;
            false
        })
    }
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source has never heard of the service.
    #[error("service {0} is unknown to discovery")]
    UnknownService(ServiceName),
    /// The source is unreachable and has no cached set to fall back to.
    #[error("discovery source unavailable: {0}")]
    Unavailable(String),
}

/// A source of service instances.
///
/// Implementations must make [`Discovery::watch`] cheap (thousands of watchers) and must never
/// block or do I/O inside it: callers use it on request paths. When the underlying source becomes
/// unreachable, implementations keep serving the last known set rather than an empty one.
pub trait Discovery: Send + Sync + fmt::Debug + 'static {
    /// A receiver that always holds the latest known set of `service`'s instances and wakes when
    /// it changes. A service not yet known yields an empty set at revision 0, which fills in when
    /// the source learns of it.
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet>;

    /// The current set, from the local cache.
    fn snapshot(&self, service: &ServiceName) -> ServiceSet {
        self.watch(service).borrow().clone()
    }
}

impl<D: Discovery + ?Sized> Discovery for Arc<D> {
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet> {
        (**self).watch(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(weights: &[(u32, HealthStatus)]) -> ServiceSet {
        let name = ServiceName::new("users").expect("valid name");
        let endpoints: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, (weight, status))| {
                let mut instance = ServiceInstance::new(name.clone(), format!("h{i}"), 80);
                instance.weight = *weight;
                Endpoint {
                    instance,
                    status: *status,
                }
            })
            .collect();
        ServiceSet {
            revision: 1,
            endpoints: endpoints.into(),
        }
    }

    #[test]
    fn weighted_picks_follow_weights_and_skip_unroutable_instances() {
        use HealthStatus::*;
        let s = set(&[(2, Passing), (5, Critical), (1, Warning), (0, Passing)]);
        let picks: Vec<String> = (0..6)
            .map(|t| {
                s.pick_weighted(t)
                    .expect("something routable")
                    .address
                    .clone()
            })
            .collect();
        assert_eq!(picks, ["h0", "h0", "h2", "h0", "h0", "h2"]);
        assert!(
            set(&[(1, Critical), (0, Passing)])
                .pick_weighted(0)
                .is_none()
        );
    }

    #[test]
    fn by_id_finds_only_routable_instances() {
        use HealthStatus::*;
        let s = set(&[(1, Passing), (1, Draining)]);
        assert_eq!(s.routable_by_id("users-h0-80").map(|i| i.port), Some(80));
        assert!(s.routable_by_id("users-h1-80").is_none());
    }
}
