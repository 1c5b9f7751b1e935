//! Prometheus metrics: the service's registry, HTTP request metrics and process metrics.
//!
//! One [`Metrics`] per service. The SDK records every request by route *template* (never the
//! raw path, which would let clients create unbounded series) and status class; components and
//! user code register their own metrics into the same registry with [`Metrics::register`].
//! `/metrics` answers in the Prometheus text format 0.0.4, or in OpenMetrics when the scraper's
//! `Accept` header prefers it (see [`Format`]).

mod format;
mod process;

use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use flotilla_telemetry::metrics::TracedHistogram;
use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE, VARY};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use format::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

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
    pub(crate) duration: Family<RouteLabels, TracedHistogram, fn() -> TracedHistogram>,
    pub(crate) in_flight: Gauge,
}

fn latency_histogram() -> TracedHistogram {
    // 0.5 ms to ~16 s: covers a loopback hop and a slow dependency alike.
    TracedHistogram::new(prometheus_client::metrics::histogram::exponential_buckets(
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
        registry.register_collector(Box::new(process::ProcessCollector));
        flotilla_telemetry::metrics::register(&mut registry);
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

    /// The exposition in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// The exposition in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => format::to_text_004(&self.encode()),
        }
    }

    /// The `/metrics` response to a request with `headers`, in the format its `Accept` prefers.
    pub fn response(&self, headers: &HeaderMap) -> Response {
        let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        let headers = [(CONTENT_TYPE, format.content_type()), (VARY, "accept")];
        (headers, self.encode_as(format)).into_response()
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

    #[tokio::test]
    async fn a_scrape_on_the_runtime_counts_its_live_tasks() {
        let parked = tokio::spawn(std::future::pending::<()>());
        let text = Metrics::new().encode();
        let samples = flotilla_testkit::prometheus::parse(&text).unwrap();
        assert!(flotilla_testkit::prometheus::sum(&samples, "tokio_alive_tasks", &[]) >= 1.0);
        parked.abort();
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(404), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
