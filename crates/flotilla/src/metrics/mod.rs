//! Prometheus metrics: the service's registry, HTTP request metrics and process metrics.
//!
//! One [`Metrics`] per service. The SDK records every request by route *template* (never the
//! raw path, which would let clients create unbounded series) and status class; components and
//! user code register their own metrics into the same registry with [`Metrics::register`].
//! `/metrics` serves the OpenMetrics text format, which Prometheus scrapes natively.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of the exposition format served at `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: &'static str,
    pub(crate) route: std::sync::Arc<String>,
    pub(crate) status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) method: &'static str,
    pub(crate) route: std::sync::Arc<String>,
}

/// The SDK's own HTTP metrics.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: Family<RouteLabels, Histogram>,
    pub(crate) in_flight: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s: covers a loopback hop and a slow dependency alike.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// A service's metrics registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub(crate) http: HttpMetrics,
    /// The event bus's metrics, registered on first use so the registry holds them once.
    #[cfg(feature = "events")]
    bus: Arc<std::sync::OnceLock<flotilla_bus::Metrics>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the HTTP and process metrics registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status class",
            http.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            http.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            http.in_flight.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            http,
            #[cfg(feature = "events")]
            bus: Arc::default(),
        }
    }

    /// The event bus's metrics (`flotilla_bus_*`) in this registry, for
    /// [`Bus::with_metrics`](flotilla_bus::Bus::with_metrics); every call answers the same
    /// metrics. [`MicroserviceBuilder::events`](crate::MicroserviceBuilder::events) uses them
    /// for a bus that records none.
    #[cfg(feature = "events")]
    pub fn bus(&self) -> flotilla_bus::Metrics {
        self.bus
            .get_or_init(|| {
                let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
                flotilla_bus::Metrics::new(&mut registry)
            })
            .clone()
    }

    /// Lets a component or user code register metrics into the service's registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Maps a status code to its class label.
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Process CPU, memory, file descriptors and start time, read from `/proc/self` at scrape time
/// (Linux only; elsewhere the metrics are simply absent). prometheus-client has no process
/// collector, and this is a handful of reads, so it is written here rather than adding a crate.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = proc_stat() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        let e = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(e)?;
        let rss = ConstGauge::new(stat.rss_bytes);
        let e = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory",
            None,
            rss.metric_type(),
        )?;
        rss.encode(e)?;
        let vsz = ConstGauge::new(stat.virtual_bytes);
        let e = encoder.encode_descriptor(
            "process_virtual_memory_bytes",
            "Virtual memory",
            None,
            vsz.metric_type(),
        )?;
        vsz.encode(e)?;
        if let Some(fds) = open_fds() {
            let g = ConstGauge::new(fds);
            let e = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        Ok(())
    }
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: i64,
    virtual_bytes: i64,
}

fn proc_stat() -> Option<ProcStat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields are counted after its ')'.
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    // After ')': state is index 0, so utime (field 14) is 11, stime 12, vsize 20, rss 21.
    let ticks = 100.0; // USER_HZ is 100 on every Linux architecture Rust targets.
    let page = 4096;
    Some(ProcStat {
        cpu_seconds: (num(11)? + num(12)?) as f64 / ticks,
        virtual_bytes: num(20)?,
        rss_bytes: num(21)? * page,
    })
}

fn open_fds() -> Option<i64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_parses_and_includes_process_metrics() {
        let m = Metrics::new();
        m.http.in_flight.inc();
        let text = m.encode();
        let samples = flotilla_testkit::prometheus::parse(&text).unwrap();
        assert_eq!(
            flotilla_testkit::prometheus::sum(&samples, "http_requests_in_flight", &[]),
            1.0
        );
        if cfg!(target_os = "linux") {
            assert!(
                flotilla_testkit::prometheus::sum(&samples, "process_resident_memory_bytes", &[])
                    > 0.0
            );
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
