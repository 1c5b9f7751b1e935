//! What the load generator measures: per kind of request, every latency and every unexpected
//! answer; a window of the last second's latencies for the live line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// The kinds of request in the mix, in the order the summary lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    ProductRead,
    ProductList,
    UserCreate,
    UserRead,
    OrderPlace,
    OrderRead,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::ProductRead => "product read",
            Kind::ProductList => "product list",
            Kind::UserCreate => "user create",
            Kind::UserRead => "user read",
            Kind::OrderPlace => "order place",
            Kind::OrderRead => "order read",
        }
    }
}

#[derive(Debug, Default)]
struct PerKind {
    micros: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

/// Shared by every request task.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    kinds: BTreeMap<Kind, PerKind>,
    /// Latencies since the live line last looked, and the errors among them.
    window: Vec<u32>,
    window_errors: u64,
}

/// The live line's view of the last interval.
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) requests: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) errors: u64,
}

impl Stats {
    /// Records one answer: its latency, and `error` (the status, or `transport`) when it was
    /// not what the request expects.
    pub(crate) fn record(&self, kind: Kind, took: Duration, error: Option<String>) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.window.push(micros);
        let per = inner.kinds.entry(kind).or_default();
        per.micros.push(micros);
        if let Some(e) = error {
            *per.errors.entry(e).or_default() += 1;
            inner.window_errors += 1;
        }
    }

    /// The interval since the last call, emptied.
    pub(crate) fn take_window(&self) -> Window {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut window = std::mem::take(&mut inner.window);
        let errors = std::mem::take(&mut inner.window_errors);
        window.sort_unstable();
        Window {
            requests: window.len(),
            p50: percentile(&window, 0.50),
            p99: percentile(&window, 0.99),
            errors,
        }
    }

    /// The whole run: totals, latency percentiles overall and per kind, errors by status.
    pub(crate) fn summary(&self, elapsed: Duration) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<u32> = Vec::new();
        let mut kinds = serde_json::Map::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, per) in &inner.kinds {
            let mut sorted = per.micros.clone();
            sorted.sort_unstable();
            all.extend_from_slice(&sorted);
            for (status, n) in &per.errors {
                *errors.entry(status.clone()).or_default() += n;
            }
            let mut v = latencies(&sorted);
            v["requests"] = json!(sorted.len());
            v["errors"] = json!(per.errors.values().sum::<u64>());
            kinds.insert(kind.name().to_owned(), v);
        }
        all.sort_unstable();
        let secs = elapsed.as_secs_f64().max(0.001);
        json!({
            "seconds": round(secs),
            "requests": all.len(),
            "requests_per_second": round(all.len() as f64 / secs),
            "latency_ms": latencies(&all),
            "errors": errors.values().sum::<u64>(),
            "errors_by_status": errors,
            "by_kind": kinds,
        })
    }
}

fn latencies(sorted: &[u32]) -> Value {
    let ms = |q: f64| round(percentile(sorted, q).as_secs_f64() * 1000.0);
    json!({ "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "max": ms(1.0) })
}

/// The `q` quantile of `sorted` (nearest rank); zero for none.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_micros(u64::from(sorted[rank - 1]))
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_micros(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_summary_counts_errors_by_status_across_kinds() {
        let stats = Stats::default();
        stats.record(Kind::ProductRead, Duration::from_millis(2), None);
        stats.record(
            Kind::OrderPlace,
            Duration::from_millis(9),
            Some("429".into()),
        );
        stats.record(
            Kind::UserCreate,
            Duration::from_millis(4),
            Some("429".into()),
        );
        let s = stats.summary(Duration::from_secs(1));
        assert_eq!(s["requests"], 3);
        assert_eq!(s["errors"], 2);
        assert_eq!(s["errors_by_status"]["429"], 2);
        assert_eq!(s["by_kind"]["order place"]["errors"], 1);
        assert_eq!(stats.take_window().requests, 3);
        assert_eq!(stats.take_window().requests, 0);
    }
}
