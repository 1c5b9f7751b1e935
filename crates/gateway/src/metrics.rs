//! Per-route Prometheus metrics (prometheus-client).

use flotilla_telemetry::metrics::{TraceExemplar, TracedHistogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-route request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Route name (`_none` when nothing matched).
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub class: &'static str,
}

/// Labels of per-route histograms and counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// The request-duration histogram: the same buckets, each with its latest sampled trace.
fn traced_latency() -> TracedHistogram {
    TracedHistogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// The gateway's metrics; register once with [`Metrics::register`].
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests answered, by route and status class.
    pub requests: Family<StatusLabels, Counter>,
    /// Time from request head to response head, by route.
    pub duration: Family<RouteLabels, TracedHistogram, fn() -> TracedHistogram>,
    /// Time the upstream took to answer with a head, by route.
    pub upstream_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Retried upstream attempts, by route.
    pub retries: Family<RouteLabels, Counter>,
    /// Requests refused by the rate limiter, by route.
    pub rate_limited: Family<RouteLabels, Counter>,
    /// Cache counters and stored bytes, by route.
    pub cache: CacheFamilies,
}

/// The response cache's series.
#[derive(Debug, Clone, Default)]
pub struct CacheFamilies {
    /// Requests answered from the cache with a fresh response.
    pub hits: Family<RouteLabels, Counter>,
    /// Requests that found no usable stored response.
    pub misses: Family<RouteLabels, Counter>,
    /// Requests answered with a stale response (`stale-while-revalidate`, `max-stale`).
    pub stale: Family<RouteLabels, Counter>,
    /// Conditional requests sent to revalidate a stored response.
    pub revalidations: Family<RouteLabels, Counter>,
    /// Bytes stored for the route.
    pub stored_bytes: Family<RouteLabels, Gauge>,
}

impl CacheFamilies {
    fn register(&self, r: &mut Registry) {
        r.register(
            "cache_hits",
            "Requests answered from the cache with a fresh response",
            self.hits.clone(),
        );
        r.register(
            "cache_misses",
            "Requests that found no usable stored response",
            self.misses.clone(),
        );
        r.register(
            "cache_stale",
            "Requests answered with a stale stored response",
            self.stale.clone(),
        );
        r.register(
            "cache_revalidations",
            "Conditional requests sent to revalidate a stored response",
            self.revalidations.clone(),
        );
        r.register(
            "cache_stored_bytes",
            "Bytes of responses stored for the route",
            self.stored_bytes.clone(),
        );
    }

    fn route(&self, labels: &RouteLabels) -> CacheMetrics {
        CacheMetrics {
            hits: self.hits.get_or_create(labels).clone(),
            misses: self.misses.get_or_create(labels).clone(),
            stale: self.stale.get_or_create(labels).clone(),
            revalidations: self.revalidations.get_or_create(labels).clone(),
            stored_bytes: self.stored_bytes.get_or_create(labels).clone(),
        }
    }
}

/// One route's cache metric handles.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Fresh hits.
    pub hits: Counter,
    /// Misses.
    pub misses: Counter,
    /// Stale responses served.
    pub stale: Counter,
    /// Revalidations sent.
    pub revalidations: Counter,
    /// Bytes stored.
    pub stored_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(traced_latency),
            upstream_duration: Family::new_with_constructor(latency),
            retries: Family::default(),
            rate_limited: Family::default(),
            cache: CacheFamilies::default(),
        }
    }
}

impl Metrics {
    /// Adds every gateway metric to `registry` under the `gateway_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "requests",
            "Requests answered by route and status class",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Request head to response head",
            self.duration.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Upstream time to response head",
            self.upstream_duration.clone(),
        );
        r.register("retries", "Retried upstream attempts", self.retries.clone());
        r.register(
            "rate_limited",
            "Requests refused by the rate limiter",
            self.rate_limited.clone(),
        );
        self.cache.register(r);
    }

    /// Handles to one route's series, resolved once so the request path neither allocates
    /// labels nor looks them up.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let labels = RouteLabels {
            route: route.to_owned(),
        };
        let class = |class| {
            let l = StatusLabels {
                route: route.to_owned(),
                class,
            };
            self.requests.get_or_create(&l).clone()
        };
        RouteMetrics {
            by_class: CLASSES.map(class),
            duration: self.duration.get_or_create(&labels).clone(),
            upstream: self.upstream_duration.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            rate_limited: self.rate_limited.get_or_create(&labels).clone(),
            cache: self.cache.route(&labels),
        }
    }
}

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// One route's metric handles (cheap clones sharing the registered series).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 4],
    duration: TracedHistogram,
    upstream: Histogram,
    /// Retried upstream attempts.
    pub retries: Counter,
    /// Requests refused by the rate limiter.
    pub rate_limited: Counter,
    /// The response cache's handles.
    pub cache: CacheMetrics,
}

impl RouteMetrics {
    /// Records one answered request; `exemplar` names its trace when it was sampled.
    pub fn observe(&self, status: u16, seconds: f64, exemplar: Option<TraceExemplar>) {
        let i = match status {
            100..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.by_class[i].inc();
        self.duration.observe(seconds, exemplar, None);
    }

    /// Records one upstream attempt's time to response head.
    pub fn upstream(&self, seconds: f64) {
        self.upstream.observe(seconds);
    }
}
