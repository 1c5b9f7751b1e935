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
use std::time::Duration;

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
/// can tell whether it has seen a set before. Revision 0 means the source has not answered
/// for the service yet (unknown), which is not the same as an answer with no instances: a
/// caller may wait for the first answer (see [`wait_known`]) but should fail at once on a
/// known empty set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSet {
    /// Per-service revision; 0 means "never seen".
    pub revision: u64,
    /// All instances, whatever their health.
    pub endpoints: Arc<[Endpoint]>,
}

impl ServiceSet {
    /// Whether the source has answered for this service at least once (its set may still be
    /// empty).
    pub fn is_known(&self) -> bool {
        self.revision > 0
    }

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

/// Waits until `rx` holds a set the source has answered for, at most `patience`; returns
/// whether it does. A watch whose source is gone returns at once with the set it holds.
///
/// For the first call after a process starts: a cache fed from a remote registry starts
/// unknown and fills in the background, and failing that call with "no instance" would be
/// wrong when the instances are there.
pub async fn wait_known(rx: &mut watch::Receiver<ServiceSet>, patience: Duration) -> bool {
    if rx.borrow().is_known() {
        return true;
    }
    let _ = tokio::time::timeout(patience, rx.wait_for(ServiceSet::is_known)).await;
    rx.borrow().is_known()
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
    /// the source learns of it. A source that answers remotely must move the revision off 0 on
    /// its first answer even when that answer is empty, so callers can tell "not asked yet"
    /// from "no instances" ([`ServiceSet::is_known`]).
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

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_known_set_ends_at_the_first_answer_or_at_the_bound() {
        let (tx, mut rx) = watch::channel(ServiceSet::default());
        assert!(
            !wait_known(&mut rx, Duration::from_secs(2)).await,
            "no answer"
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send_modify(|s| s.revision = 1);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let started = tokio::time::Instant::now();
        assert!(wait_known(&mut rx, Duration::from_secs(2)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(rx.borrow().is_known() && rx.borrow().routable().next().is_none());
    }

    #[test]
    fn by_id_finds_only_routable_instances() {
        use HealthStatus::*;
        let s = set(&[(1, Passing), (1, Draining)]);
        assert_eq!(s.routable_by_id("users-h0-80").map(|i| i.port), Some(80));
        assert!(s.routable_by_id("users-h1-80").is_none());
    }
}
