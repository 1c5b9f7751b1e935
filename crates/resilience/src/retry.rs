//! Retries: a [`tower::retry::Policy`] for HTTP that knows which calls are safe to repeat.
//!
//! The policy retries only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or
//! requests carrying an `Idempotency-Key`, unless configured otherwise; failures that cannot have
//! reached the upstream (connect errors) are retried for every method. It retries on configured
//! statuses (502, 503, 504 by default), on its own per-attempt timeouts and on transport errors;
//! honours `Retry-After`; waits with full-jitter backoff; never sleeps past the call's deadline;
//! and spends from a [`TpsBudget`] shared by every call to one upstream, so a sustained outage
//! costs a bounded fraction of extra load instead of multiplying it.
//!
//! Request bodies must be `Clone` to be retried at all: a body that is streamed cannot be
//! replayed, so the gateway buffers small bodies (or skips this layer) before it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Request, Response};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, RetryLayer};

use crate::backoff::Backoff;
use crate::deadline::Deadline;
use crate::metrics::Metrics;
use crate::{BoxError, Error};

/// The header that marks a non-idempotent request as safe to repeat.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Resolved retry settings (see [`crate::policy`] for the configuration keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in total, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Response statuses that are retried.
    pub statuses: Vec<u16>,
    /// Retry non-idempotent requests without an `Idempotency-Key` too.
    pub retry_non_idempotent: bool,
    /// A `Retry-After` longer than this ends retrying instead of waiting.
    pub max_retry_after: Duration,
    /// Retries allowed as a fraction of first attempts (0.2 = one retry per five calls).
    pub budget_ratio: f32,
    /// Retries always allowed per second, whatever the ratio, so quiet clients can retry.
    pub budget_min_per_sec: u32,
    /// How long a call counts towards the budget (1 to 60 s).
    pub budget_ttl: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            statuses: vec![502, 503, 504],
            retry_non_idempotent: false,
            max_retry_after: Duration::from_secs(10),
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            budget_ttl: Duration::from_secs(10),
        }
    }
}

impl RetryConfig {
    /// A retry budget with these settings, to share between every call to one upstream.
    /// The settings must have been validated (ttl 1..=60 s, ratio 0..=1000).
    pub fn budget(&self) -> Arc<TpsBudget> {
        Arc::new(TpsBudget::new(
            self.budget_ttl
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            self.budget_min_per_sec.min(i32::MAX as u32 - 1),
            self.budget_ratio.clamp(0.0, 1000.0),
        ))
    }
}

/// The retry policy for one upstream; cheap to clone (tower clones it per call).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    config: Arc<RetryConfig>,
    budget: Arc<TpsBudget>,
    upstream: Arc<str>,
    metrics: Option<Metrics>,
    attempt: u32,
}

impl RetryPolicy {
    /// A policy for `upstream`, spending from `budget` (shared by all calls to that upstream).
    pub fn new(upstream: &str, config: RetryConfig, budget: Arc<TpsBudget>) -> Self {
        Self {
            config: Arc::new(config),
            budget,
            upstream: upstream.into(),
            metrics: None,
            attempt: 1,
        }
    }

    /// Counts retries and budget refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The layer applying this policy.
    pub fn layer(self) -> RetryLayer<Self> {
        RetryLayer::new(self)
    }

    fn eligible(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.config.retry_non_idempotent
            || method.is_idempotent()
            || headers.contains_key(IDEMPOTENCY_KEY)
    }

    /// Whether this outcome may be retried at all, and any delay the upstream asked for.
    fn wants_retry<B, R>(
        &self,
        req: &Request<B>,
        result: &Result<Response<R>, BoxError>,
    ) -> Option<Option<Duration>> {
        let eligible = self.eligible(req.method(), req.headers());
        match result {
            Ok(resp) => (eligible && self.config.statuses.contains(&resp.status().as_u16()))
                .then(|| retry_after(resp.headers())),
            Err(e) => match crate::error::find(e.as_ref()) {
                Some(Error::Transport { connect: true, .. }) => Some(None),
                Some(Error::Transport { connect: false, .. } | Error::Timeout(_)) => {
                    eligible.then_some(None)
                }
                _ => None,
            },
        }
    }

    fn delay(&self, asked: Option<Duration>) -> Option<Duration> {
        match asked {
            Some(d) if d > self.config.max_retry_after => None,
            Some(d) => Some(d),
            None => Some(self.config.backoff.delay(self.attempt)),
        }
    }

    fn count(&self, what: fn(&Metrics, &str)) {
        if let Some(m) = &self.metrics {
            what(m, &self.upstream);
        }
    }
}

impl<B: Clone, R> Policy<Request<B>, Response<R>, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<R>, BoxError>,
    ) -> Option<Self::Future> {
        if self.attempt == 1 {
            self.budget.deposit();
        }
        if self.attempt >= self.config.max_attempts {
            return None;
        }
        let asked = self.wants_retry(req, result)?;
        let delay = self.delay(asked)?;
        let deadline = req.extensions().get::<Deadline>().copied();
        if deadline.is_some_and(|d| d.remaining() <= delay) {
            return None;
        }
        if !self.budget.withdraw() {
            self.count(Metrics::retry_budget_exhausted);
            return None;
        }
        self.attempt += 1;
        self.count(Metrics::retried);
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

/// Reads `Retry-After` as delta-seconds or an HTTP date; unreadable values are ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_ignores_garbage() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
