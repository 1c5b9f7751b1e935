//! Turning merged policy levels into the settings each layer takes, filling built-in defaults.

use std::num::NonZeroU32;
use std::time::Duration;

use http::HeaderName;

use super::spec::{BalanceSpec, BreakerSpec, Dur, PolicySpec, RetrySpec};
use crate::backoff::Backoff;
use crate::balance::{BalanceConfig, OutlierConfig};
use crate::breaker::{BreakerConfig, WindowKind};
use crate::retry::RetryConfig;

/// Default overall budget of a call, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a rate limit counts calls by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// Every call to the target shares one budget.
    Global,
    /// One budget per value of this header (calls without it share one budget).
    Header(HeaderName),
}

/// Resolved rate-limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained calls per second per key.
    pub per_second: NonZeroU32,
    /// Calls allowed at once.
    pub burst: NonZeroU32,
    /// What calls are counted by.
    pub key: RateKey,
}

/// Every setting for one target, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPolicy {
    /// Overall budget of a call, retries included.
    pub timeout: Duration,
    /// Budget of each attempt, if tighter than what is left of `timeout`.
    pub attempt_timeout: Option<Duration>,
    /// Retries.
    pub retry: RetryConfig,
    /// The breaker, unless disabled.
    pub breaker: Option<BreakerConfig>,
    /// (max concurrent, max queued), if bounded.
    pub bulkhead: Option<(usize, usize)>,
    /// The rate limit, if any.
    pub rate_limit: Option<RateLimitConfig>,
    /// Load balancing and outlier ejection.
    pub balance: BalanceConfig,
    /// Header whose value is the consistent-hash key.
    pub hash_header: Option<HeaderName>,
}

impl Default for ResolvedPolicy {
    fn default() -> Self {
        Self::from_spec(&PolicySpec::default())
    }
}

impl ResolvedPolicy {
    /// Fills `spec` (already validated) with built-in defaults.
    pub fn from_spec(spec: &PolicySpec) -> Self {
        let balance = spec.balance.clone().unwrap_or_default();
        Self {
            timeout: Dur::or(&spec.timeout, DEFAULT_TIMEOUT),
            attempt_timeout: spec.attempt_timeout.as_ref().and_then(|d| d.get().ok()),
            retry: retry(&spec.retry.clone().unwrap_or_default()),
            breaker: breaker(&spec.breaker.clone().unwrap_or_default()),
            bulkhead: spec.bulkhead.as_ref().and_then(|b| {
                let max = b.max_concurrent?;
                Some((max as usize, b.max_queue.unwrap_or(0) as usize))
            }),
            rate_limit: spec.rate_limit.as_ref().and_then(|r| {
                let per_second = NonZeroU32::new(r.per_second?)?;
                let burst = r.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
                let key = match r.key.as_deref().and_then(|k| k.strip_prefix("header:")) {
                    Some(h) => RateKey::Header(HeaderName::from_bytes(h.as_bytes()).ok()?),
                    None => RateKey::Global,
                };
                Some(RateLimitConfig {
                    per_second,
                    burst,
                    key,
                })
            }),
            hash_header: balance
                .hash_header
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            balance: balance_config(&balance),
        }
    }
}

fn retry(r: &RetrySpec) -> RetryConfig {
    let d = RetryConfig::default();
    RetryConfig {
        max_attempts: r.max_attempts.unwrap_or(d.max_attempts),
        backoff: Backoff {
            base: Dur::or(&r.base_delay, d.backoff.base),
            cap: Dur::or(&r.max_delay, d.backoff.cap),
        },
        statuses: r.statuses.clone().unwrap_or(d.statuses),
        retry_non_idempotent: r.retry_non_idempotent.unwrap_or(d.retry_non_idempotent),
        max_retry_after: Dur::or(&r.max_retry_after, d.max_retry_after),
        budget_ratio: r.budget_ratio.unwrap_or(d.budget_ratio),
        budget_min_per_sec: r.budget_min_per_sec.unwrap_or(d.budget_min_per_sec),
        budget_ttl: Dur::or(&r.budget_ttl, d.budget_ttl),
    }
}

fn breaker(b: &BreakerSpec) -> Option<BreakerConfig> {
    if b.enabled == Some(false) {
        return None;
    }
    let d = BreakerConfig::default();
    let window = match (&b.window_duration, b.window_size) {
        (Some(t), _) => WindowKind::Time(Dur::or(&Some(t.clone()), Duration::from_secs(60))),
        (None, Some(n)) => WindowKind::Count(n),
        (None, None) => d.window,
    };
    Some(BreakerConfig {
        consecutive_failures: b
            .consecutive_failures
            .map_or(d.consecutive_failures, |n| (n > 0).then_some(n)),
        failure_rate: b
            .failure_rate
            .map_or(d.failure_rate, |r| (r > 0.0).then_some(r)),
        slow_call_rate: b
            .slow_call_rate
            .map_or(d.slow_call_rate, |r| (r > 0.0).then_some(r)),
        slow_call_duration: Dur::or(&b.slow_call_duration, d.slow_call_duration),
        window,
        minimum_calls: b.minimum_calls.unwrap_or(d.minimum_calls),
        open_duration: Dur::or(&b.open_duration, d.open_duration),
        open_multiplier: b.open_multiplier.unwrap_or(d.open_multiplier),
        max_open_duration: Dur::or(&b.max_open_duration, d.max_open_duration),
        half_open_probes: b.half_open_probes.unwrap_or(d.half_open_probes),
        failure_statuses: b.failure_statuses.clone().unwrap_or(d.failure_statuses),
    })
}

fn balance_config(b: &BalanceSpec) -> BalanceConfig {
    let d = BalanceConfig::default();
    BalanceConfig {
        strategy: b.strategy.unwrap_or(d.strategy),
        ewma_decay: Dur::or(&b.ewma_decay, d.ewma_decay),
        default_rtt: d.default_rtt,
        virtual_nodes: b.virtual_nodes.unwrap_or(d.virtual_nodes),
        outlier: OutlierConfig {
            consecutive_failures: b.eject_after.unwrap_or(d.outlier.consecutive_failures),
            base_ejection: Dur::or(&b.base_ejection, d.outlier.base_ejection),
            max_ejection: Dur::or(&b.max_ejection, d.outlier.max_ejection),
        },
    }
}
