//! Prometheus metrics for every layer, registered into the registry the service exposes at
//! `/metrics`. One [`Metrics`] is shared (cheap clones) by all layers and upstreams of a process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::breaker::State;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Upstream {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Transition {
    upstream: String,
    from: &'static str,
    to: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Rejection {
    upstream: String,
    reason: &'static str,
}

/// The resilience metrics of one process.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    breaker_state: Family<Upstream, Gauge>,
    breaker_transitions: Family<Transition, Counter>,
    retries: Family<Upstream, Counter>,
    budget_exhausted: Family<Upstream, Counter>,
    rejections: Family<Rejection, Counter>,
    ejections: Family<Upstream, Counter>,
}

fn upstream(name: &str) -> Upstream {
    Upstream {
        upstream: name.to_owned(),
    }
}

impl Metrics {
    /// New, unregistered metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Metrics registered under `flotilla_resilience_*` in `registry`.
    pub fn registered(registry: &mut Registry) -> Self {
        let m = Self::new();
        m.register(registry);
        m
    }

    /// Registers these metrics (clones share their values) into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("flotilla_resilience");
        r.register(
            "breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open",
            self.breaker_state.clone(),
        );
        r.register(
            "breaker_transitions",
            "Circuit breaker state changes",
            self.breaker_transitions.clone(),
        );
        r.register("retries", "Retries sent", self.retries.clone());
        r.register(
            "retry_budget_exhausted",
            "Retries refused because the retry budget was spent",
            self.budget_exhausted.clone(),
        );
        r.register(
            "rejections",
            "Calls refused locally, by reason (circuit_open, bulkhead_full, rate_limited, deadline_exceeded)",
            self.rejections.clone(),
        );
        r.register(
            "ejections",
            "Instances ejected by passive outlier detection",
            self.ejections.clone(),
        );
    }

    /// Records a breaker state change.
    pub fn breaker_transition(&self, name: &str, from: State, to: State) {
        let labels = Transition {
            upstream: name.to_owned(),
            from: from.as_str(),
            to: to.as_str(),
        };
        self.breaker_transitions.get_or_create(&labels).inc();
        self.breaker_state
            .get_or_create(&upstream(name))
            .set(to as i64);
    }

    /// Counts one retry.
    pub fn retried(&self, name: &str) {
        self.retries.get_or_create(&upstream(name)).inc();
    }

    /// Counts one retry refused by the budget.
    pub fn retry_budget_exhausted(&self, name: &str) {
        self.budget_exhausted.get_or_create(&upstream(name)).inc();
    }

    /// Counts one local rejection.
    pub fn rejected(&self, name: &str, reason: &'static str) {
        let labels = Rejection {
            upstream: name.to_owned(),
            reason,
        };
        self.rejections.get_or_create(&labels).inc();
    }

    /// Counts one ejection.
    pub fn ejected(&self, name: &str) {
        self.ejections.get_or_create(&upstream(name)).inc();
    }
}
