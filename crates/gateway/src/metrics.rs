//! Per-route Prometheus metrics (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// The gateway's metrics; register once with [`Metrics::register`].
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests answered, by route and status class.
    pub requests: Family<StatusLabels, Counter>,
    /// Time from request head to response head, by route.
    pub duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Time the upstream took to answer with a head, by route.
    pub upstream_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Retried upstream attempts, by route.
    pub retries: Family<RouteLabels, Counter>,
    /// Requests refused by the rate limiter, by route.
    pub rate_limited: Family<RouteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            upstream_duration: Family::new_with_constructor(latency),
            retries: Family::default(),
            rate_limited: Family::default(),
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
        }
    }
}

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// One route's metric handles (cheap clones sharing the registered series).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 4],
    duration: Histogram,
    upstream: Histogram,
    /// Retried upstream attempts.
    pub retries: Counter,
    /// Requests refused by the rate limiter.
    pub rate_limited: Counter,
}

impl RouteMetrics {
    /// Records one answered request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let i = match status {
            100..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.by_class[i].inc();
        self.duration.observe(seconds);
    }

    /// Records one upstream attempt's time to response head.
    pub fn upstream(&self, seconds: f64) {
        self.upstream.observe(seconds);
    }
}
