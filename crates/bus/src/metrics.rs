//! Prometheus metrics of the delivery engine (`flotilla_bus_*`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The engine's counters and handler-latency histogram; cheap to clone. Register once and
/// hand to [`Bus::with_metrics`](crate::Bus::with_metrics).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    published: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    acked: Family<Labels, Counter>,
    nacked: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    handler_seconds: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` with the `flotilla_bus` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let inner = Inner {
            published: Family::default(),
            delivered: Family::default(),
            acked: Family::default(),
            nacked: Family::default(),
            dead_lettered: Family::default(),
            handler_seconds: Family::new_with_constructor(latency_histogram),
        };
        let r = registry.sub_registry_with_prefix("flotilla_bus");
        r.register(
            "published",
            "Events stored by publish, by topic",
            inner.published.clone(),
        );
        r.register(
            "delivered",
            "Deliveries to handlers, by group",
            inner.delivered.clone(),
        );
        r.register("acked", "Events acked, by group", inner.acked.clone());
        r.register(
            "nacked",
            "Failed attempts to retry, by group",
            inner.nacked.clone(),
        );
        r.register(
            "dead_lettered",
            "Events dead-lettered, by group and reason",
            inner.dead_lettered.clone(),
        );
        r.register(
            "handler_seconds",
            "Handler run time, by group",
            inner.handler_seconds.clone(),
        );
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn published(&self, topic: &str) {
        self.inner
            .published
            .get_or_create(&vec![("topic", topic.to_owned())])
            .inc();
    }

    pub(crate) fn delivered(&self, group: &str) {
        self.inner
            .delivered
            .get_or_create(&group_label(group))
            .inc();
    }

    pub(crate) fn acked(&self, group: &str) {
        self.inner.acked.get_or_create(&group_label(group)).inc();
    }

    pub(crate) fn nacked(&self, group: &str) {
        self.inner.nacked.get_or_create(&group_label(group)).inc();
    }

    pub(crate) fn dead_lettered(&self, group: &str, reason: &'static str) {
        let labels = vec![("group", group.to_owned()), ("reason", reason.to_owned())];
        self.inner.dead_lettered.get_or_create(&labels).inc();
    }

    pub(crate) fn handler_time(&self, group: &str, took: Duration) {
        let h = self
            .inner
            .handler_seconds
            .get_or_create(&group_label(group));
        h.observe(took.as_secs_f64());
    }
}

fn group_label(group: &str) -> Labels {
    vec![("group", group.to_owned())]
}
