//! Registry metrics (Prometheus): instances by status, checks run, check latency, watchers.
//!
//! Every series a dashboard or alert may use exists from start at zero (each check kind and
//! result, each status), so `rate()` and absence alerts work before the first check runs.
//! The registry serves them at `/api/v1/registry/metrics`; [`Registry::register_metrics`]
//! adds them to another registry, such as the control plane's `/metrics`.

use std::time::Duration;

use flotilla_discovery::HealthStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::Registry;

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

/// Every check kind's label (`CheckSpec::kind_label`), for the zero series exported at start.
const KINDS: [&str; 3] = ["http", "tcp", "ttl"];
/// Every status a check can report (draining is set by an operator, never by a check).
const RESULTS: [HealthStatus; 3] = [
    HealthStatus::Passing,
    HealthStatus::Warning,
    HealthStatus::Critical,
];
/// Every status an instance can be in, for the instance gauges.
const STATUSES: [HealthStatus; 4] = [
    HealthStatus::Passing,
    HealthStatus::Warning,
    HealthStatus::Critical,
    HealthStatus::Draining,
];

const PREFIX: &str = "flotilla_registry";
const INSTANCES: (&str, &str) = ("instances", "Registered instances by health status");
const CHECKS: (&str, &str) = ("checks", "Health checks run, by kind and result");
const LATENCY: (&str, &str) = (
    "check_duration_seconds",
    "Time an HTTP or TCP health check took, by kind",
);
const WATCHERS: (&str, &str) = (
    "watchers",
    "Open watches (in-process, blocking queries, streams)",
);

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
    pub(crate) fn new(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            instances: Family::default(),
            checks: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            watchers: Gauge::default(),
        };
        m.create_zero_series();
        let sub = registry.sub_registry_with_prefix(PREFIX);
        sub.register(INSTANCES.0, INSTANCES.1, m.instances.clone());
        sub.register(CHECKS.0, CHECKS.1, m.checks.clone());
        sub.register(LATENCY.0, LATENCY.1, m.latency.clone());
        sub.register(WATCHERS.0, WATCHERS.1, m.watchers.clone());
        m
    }

    /// Creates each labelled series at zero (`get_or_create` creates; the guard it answers is
    /// not needed).
    fn create_zero_series(&self) {
        for kind in KINDS {
            for status in RESULTS {
                drop(self.checks.get_or_create(&check_label(kind, status)));
            }
            if kind != "ttl" {
                drop(self.latency.get_or_create(&KindLabel { kind: kind.into() }));
            }
        }
        for status in STATUSES {
            let label = StatusLabel {
                status: status.to_string(),
            };
            drop(self.instances.get_or_create(&label));
        }
    }

    /// Records one check result.
    pub(crate) fn check_ran(&self, kind: &str, status: HealthStatus, took: Duration) {
        self.checks.get_or_create(&check_label(kind, status)).inc();
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

    /// Writes every family, named and described as [`Metrics::new`] registers them.
    fn encode_all(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families: [((&str, &str), &dyn EncodeMetric); 4] = [
            (INSTANCES, &self.instances),
            (CHECKS, &self.checks),
            (LATENCY, &self.latency),
            (WATCHERS, &self.watchers),
        ];
        for ((name, help), metric) in families {
            let name = format!("{PREFIX}_{name}");
            // `Registry::register` ends every HELP with a full stop; so does this.
            let help = format!("{help}.");
            let e = encoder.encode_descriptor(&name, &help, None, metric.metric_type())?;
            metric.encode(e)?;
        }
        Ok(())
    }
}

fn check_label(kind: &str, status: HealthStatus) -> CheckLabel {
    CheckLabel {
        kind: kind.into(),
        status: status.to_string(),
    }
}

impl Registry {
    /// Adds the registry's metrics (`flotilla_registry_*`) to `registry`, read fresh from the
    /// catalog on every scrape: how the control plane serves them on its own `/metrics`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(Scrape(self.clone())));
    }

    /// Sets the gauges computed from the catalog, before an exposition is written.
    pub(crate) fn refresh_metrics(&self) {
        let mut counts = STATUSES.map(|s| (s, 0));
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
    }
}

/// The registry's metrics as a collector of another Prometheus registry.
#[derive(Debug)]
struct Scrape(Registry);

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.refresh_metrics();
        self.0.inner.metrics.encode_all(encoder)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use flotilla_discovery::catalog::MemoryCatalogStore;
    use flotilla_testkit::prometheus::{parse, sum};

    use crate::{Options, Registration, Registry};

    async fn scrape(registry: &Registry) -> String {
        let mut other = prometheus_client::registry::Registry::default();
        registry.register_metrics(&mut other);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &other).unwrap();
        text
    }

    #[tokio::test]
    async fn every_check_series_exists_at_zero_before_any_check_runs() {
        let store = Arc::new(MemoryCatalogStore::new());
        let registry = Registry::new(Options::default(), store).await.unwrap();
        let text = scrape(&registry).await;
        let samples = parse(&text).unwrap();
        for kind in super::KINDS {
            for status in ["passing", "warning", "critical"] {
                let labels = [("kind", kind), ("status", status)];
                let found = samples.iter().any(|s| {
                    s.name == "flotilla_registry_checks_total"
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
                });
                assert!(found, "no {kind}/{status} check series in\n{text}");
            }
        }
        let buckets = |kind| {
            sum(
                &samples,
                "flotilla_registry_check_duration_seconds_count",
                &[("kind", kind)],
            )
        };
        assert_eq!((buckets("http"), buckets("tcp")), (0.0, 0.0));
        assert!(
            text.contains("# HELP flotilla_registry_checks Health checks run"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_scrape_reads_the_instance_counts_of_that_moment() {
        let store = Arc::new(MemoryCatalogStore::new());
        let registry = Registry::new(Options::default(), store).await.unwrap();
        let count = |text: &str, status| {
            sum(
                &parse(text).unwrap(),
                "flotilla_registry_instances",
                &[("status", status)],
            )
        };
        assert_eq!(count(&scrape(&registry).await, "passing"), 0.0);
        let registration: Registration = serde_json::from_value(serde_json::json!({
            "name": "users", "address": "127.0.0.1", "port": 80, "status": "passing"
        }))
        .unwrap();
        registry.register(registration).await.unwrap();
        assert_eq!(count(&scrape(&registry).await, "passing"), 1.0);
    }
}
