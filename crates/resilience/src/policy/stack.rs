//! Building the layer stack a [`ResolvedPolicy`] describes, with the state that must be shared
//! per upstream (breakers, retry budgets) kept in one [`Resilience`] per process.
//!
//! Order, outermost first: rate limit (one token per call, not per attempt), overall timeout
//! (sets the deadline), retry, circuit breaker (judges each attempt), bulkhead (a slot per
//! attempt, freed during backoff), per-attempt timeout, then the caller's endpoint service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use tower::retry::budget::TpsBudget;
use tower::{Service, ServiceBuilder};

use super::{RateKey, ResolvedPolicy};
use crate::BoxError;
use crate::breaker::{self, CircuitBreaker, CircuitBreakerLayer};
use crate::bulkhead::BulkheadLayer;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimitLayer;
use crate::retry::RetryPolicy;
use crate::timeout::TimeoutLayer;

/// Per-process resilience state: breakers and retry budgets per upstream, and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Resilience {
    metrics: Option<Metrics>,
    breakers: breaker::Registry,
    budgets: Arc<Mutex<HashMap<String, Arc<TpsBudget>>>>,
}

impl Resilience {
    /// New state reporting to `metrics` (pass the SDK's or gateway's metrics).
    pub fn new(metrics: Option<Metrics>) -> Self {
        Self {
            breakers: breaker::Registry::new(metrics.clone()),
            metrics,
            budgets: Arc::default(),
        }
    }

    /// The breakers, to subscribe to transitions or read states.
    pub fn breakers(&self) -> &breaker::Registry {
        &self.breakers
    }

    /// The metrics layers report to.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// The breaker `policy` gives `upstream`, shared with every other stack for it.
    pub fn breaker(&self, upstream: &str, policy: &ResolvedPolicy) -> Option<Arc<CircuitBreaker>> {
        policy
            .breaker
            .as_ref()
            .map(|c| self.breakers.get_or_create(upstream, c))
    }

    fn budget(&self, upstream: &str, policy: &ResolvedPolicy) -> Arc<TpsBudget> {
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(upstream.to_owned())
            .or_insert_with(|| policy.retry.budget())
            .clone()
    }

    /// Wraps `inner` (the endpoint that actually sends a request) in the layers of `policy`
    /// for calls to `upstream`. Request bodies must be `Clone` so attempts can be replayed.
    pub fn stack<S, B, R>(
        &self,
        upstream: &str,
        policy: &ResolvedPolicy,
        inner: S,
    ) -> impl Service<Request<B>, Response = Response<R>, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
    where
        S: Service<Request<B>, Response = Response<R>, Error = BoxError> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Clone + Send + Sync + 'static,
        R: Send + 'static,
    {
        let m = self.metrics.clone();
        let mut retry = RetryPolicy::new(
            upstream,
            policy.retry.clone(),
            self.budget(upstream, policy),
        );
        if let Some(m) = &m {
            retry = retry.with_metrics(m.clone());
        }
        let rate = policy.rate_limit.as_ref().map(|r| {
            let key = r.key.clone();
            let key = move |req: &Request<B>| match &key {
                RateKey::Global => None,
                RateKey::Header(h) => req.headers().get(h).cloned(),
            };
            RateLimitLayer::new(upstream, r.per_second, r.burst, key, m.clone())
        });
        let bulkhead = policy
            .bulkhead
            .map(|(max, queue)| BulkheadLayer::new(upstream, max, queue, m.clone()));
        ServiceBuilder::new()
            .option_layer(rate)
            .layer(TimeoutLayer::new(policy.timeout))
            .layer(retry.layer())
            .option_layer(self.breaker(upstream, policy).map(CircuitBreakerLayer::new))
            .option_layer(bulkhead)
            .option_layer(policy.attempt_timeout.map(TimeoutLayer::new))
            .service(inner)
    }
}
