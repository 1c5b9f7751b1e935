//! Registry metrics (Prometheus): instances by status, checks run, check latency, watchers.

use std::time::Duration;

use flotilla_discovery::HealthStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    kind: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type HistogramFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The registry's metrics.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    instances: Family<StatusLabel, Gauge>,
    checks: Family<CheckLabel, Counter>,
    latency: HistogramFamily,
    watchers: Gauge,
}

impl Metrics {
    /// New metrics, registered into `registry` under `flotilla_registry_*`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            instances: Family::default(),
            checks: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            watchers: Gauge::default(),
        };
        let sub = registry.sub_registry_with_prefix("flotilla_registry");
        sub.register(
            "instances",
            "Registered instances by health status",
            m.instances.clone(),
        );
        sub.register(
            "checks",
            "Health checks run, by kind and result",
            m.checks.clone(),
        );
        sub.register(
            "check_duration_seconds",
            "Time a health check took, by kind",
            m.latency.clone(),
        );
        sub.register(
            "watchers",
            "Open watches (in-process, blocking queries, streams)",
            m.watchers.clone(),
        );
        m
    }

    /// Records one check result.
    pub(crate) fn check_ran(&self, kind: &str, status: HealthStatus, took: Duration) {
        self.checks
            .get_or_create(&CheckLabel {
                kind: kind.into(),
                status: status.to_string(),
            })
            .inc();
        if kind != "ttl" {
            self.latency
                .get_or_create(&KindLabel { kind: kind.into() })
                .observe(took.as_secs_f64());
        }
    }

    /// Sets the gauges computed from the catalog at scrape time.
    pub(crate) fn set_gauges(&self, by_status: [(HealthStatus, usize); 4], watchers: usize) {
        for (status, n) in by_status {
            self.instances
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.watchers
            .set(i64::try_from(watchers).unwrap_or(i64::MAX));
    }
}
