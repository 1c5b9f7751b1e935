//! Rate limits shared across gateway replicas: a route with `rate_limit.shared = true` asks a
//! [`SharedRateLimiter`] (Redis, wired by the binary) instead of its in-memory limiter, each
//! call bounded by a short timeout. When the shared store cannot answer, the route's
//! `on_shared_failure` policy decides: limit locally (default), admit, or refuse with 503.
//! Fallbacks are counted per route and logged at most once per [`LOG_EVERY`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_resilience::shared_rate_limit::{Decision, Quota, SharedRateLimiter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::Error;
use crate::config::RateLimitConfig;

/// What a shared route does when the shared store cannot answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSharedFailure {
    /// Count the request in this replica's in-memory limiter (the edge keeps limiting, each
    /// replica with the full quota, and keeps serving).
    #[default]
    Local,
    /// Admit the request without counting it.
    Allow,
    /// Refuse the request with 503.
    Deny,
}

impl OnSharedFailure {
    fn label(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// How often a route that keeps falling back logs about it.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The default bound on one call to the shared store.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// Labels of the fallback counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Route name.
    pub route: String,
    /// The policy applied: `local`, `allow` or `deny`.
    pub policy: &'static str,
}

/// The shared limiter every shared route of a gateway uses, with its timeout and metrics.
#[derive(Debug)]
pub struct SharedLimits {
    limiter: Arc<dyn SharedRateLimiter>,
    timeout: Duration,
    fallbacks: Family<FallbackLabels, Counter>,
}

impl SharedLimits {
    /// Uses `limiter`, waiting at most `timeout` for each answer.
    pub fn new(limiter: Arc<dyn SharedRateLimiter>, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(Error::config(
                "shared_rate_limits.timeout",
                "must be above 0",
            ));
        }
        Ok(Self {
            limiter,
            timeout,
            fallbacks: Family::default(),
        })
    }

    /// Adds `gateway_rate_limit_shared_fallbacks_total` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("gateway").register(
            "rate_limit_shared_fallbacks",
            "Requests whose shared rate limit could not be asked, by route and policy applied",
            self.fallbacks.clone(),
        );
    }
}

/// One route's use of the shared limiter.
#[derive(Debug)]
pub(super) struct SharedRoute {
    limits: Arc<SharedLimits>,
    quota: Quota,
    /// Keeps routes apart in the shared store: `<route>:<caller>`.
    route: String,
    pub(super) on_failure: OnSharedFailure,
    fallbacks: Counter,
    log: FallbackLog,
}

impl SharedRoute {
    pub(super) fn build(
        cfg: &RateLimitConfig,
        route: &str,
        key: &str,
        limits: &Arc<SharedLimits>,
    ) -> Result<Self, Error> {
        let burst = cfg.burst.unwrap_or(cfg.requests);
        let quota = Quota::per_window(cfg.requests, cfg.per.duration(), burst)
            .map_err(|e| Error::config(format!("{key}.requests"), e.to_string()))?;
        let labels = FallbackLabels {
            route: route.to_owned(),
            policy: cfg.on_shared_failure.label(),
        };
        Ok(Self {
            limits: limits.clone(),
            quota,
            route: route.to_owned(),
            on_failure: cfg.on_shared_failure,
            fallbacks: limits.fallbacks.get_or_create(&labels).clone(),
            log: FallbackLog::default(),
        })
    }

    /// The shared decision for `caller`, or `None` when the store did not answer in time (the
    /// fallback is then counted and, now and then, logged).
    pub(super) async fn acquire(&self, caller: &str) -> Option<Decision> {
        let key = format!("{}:{caller}", self.route);
        let call = self.limits.limiter.acquire(&key, &self.quota);
        let failure = match tokio::time::timeout(self.limits.timeout, call).await {
            Ok(Ok(decision)) => return Some(decision),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.limits.timeout),
        };
        self.fallbacks.inc();
        self.log.failed(&self.route, self.on_failure, &failure);
        None
    }
}

/// Logs fallbacks at most once per [`LOG_EVERY`], with how many happened since the last line.
#[derive(Debug, Default)]
struct FallbackLog {
    last: Mutex<Option<Instant>>,
    since_last: AtomicU64,
}

impl FallbackLog {
    fn failed(&self, route: &str, policy: OnSharedFailure, reason: &str) {
        let count = self.since_last.fetch_add(1, Ordering::Relaxed) + 1;
        // A request that finds the lock taken only counts: another one is logging.
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.since_last.store(0, Ordering::Relaxed);
        tracing::warn!(
            route,
            policy = policy.label(),
            fallbacks = count,
            reason,
            "shared rate limiter unavailable; applying the route's on_shared_failure policy"
        );
    }
}
