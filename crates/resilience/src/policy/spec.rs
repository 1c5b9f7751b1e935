//! The policy file's sections as written: every field optional, so a more specific level only
//! overrides what it names. Validation happens here, per level, so errors name the key where
//! the bad value was written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::balance::Strategy;

/// A duration written as a string with a unit: `250ms`, `2s`, `1m`, `1h`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dur(pub String);

impl Dur {
    /// The parsed duration, or why it cannot be parsed.
    pub fn get(&self) -> Result<Duration, String> {
        let s = self.0.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"250ms\", \"2s\", \"1m\""))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            u => return Err(format!("{s:?} has unit {u:?}; use ms, s, m or h")),
        };
        Ok(d)
    }

    /// The parsed duration; only for values that passed validation.
    pub(crate) fn or(this: &Option<Dur>, default: Duration) -> Duration {
        this.as_ref().and_then(|d| d.get().ok()).unwrap_or(default)
    }
}

macro_rules! section {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fm])* pub $field: Option<$ty>,)* }
        impl $name {
            /// `over`'s fields where set, this section's elsewhere.
            pub fn merge(self, over: Self) -> Self {
                Self { $($field: over.$field.or(self.$field),)* }
            }
        }
    };
}

section!(
    /// `[..retry]`: see [`crate::retry::RetryConfig`].
    RetrySpec {
        /// Attempts in total, first included (default 3; 1 disables retries).
        max_attempts: u32,
        /// Ceiling of the first backoff (default 25ms).
        base_delay: Dur,
        /// Largest backoff (default 1s).
        max_delay: Dur,
        /// Statuses retried (default [502, 503, 504]).
        statuses: Vec<u16>,
        /// Retry non-idempotent requests without an Idempotency-Key (default false).
        retry_non_idempotent: bool,
        /// Longest Retry-After honoured (default 10s).
        max_retry_after: Dur,
        /// Retries per first attempt (default 0.2).
        budget_ratio: f32,
        /// Retries always allowed per second (default 10).
        budget_min_per_sec: u32,
        /// How long a call counts towards the budget, 1s to 60s (default 10s).
        budget_ttl: Dur,
    }
);

section!(
    /// `[..breaker]`: see [`crate::breaker::BreakerConfig`].
    BreakerSpec {
        /// Whether the breaker is used (default true).
        enabled: bool,
        /// Failures in a row that open it (default 5; 0 disables the rule).
        consecutive_failures: u32,
        /// Failure rate over the window that opens it, 0 to 1 (default 0.5; 0 disables).
        failure_rate: f64,
        /// Slow-call rate that opens it, 0 to 1 (default: disabled).
        slow_call_rate: f64,
        /// A call this long is slow (default 2s).
        slow_call_duration: Dur,
        /// Count window: the last N calls (default 20).
        window_size: u32,
        /// Time window instead of a count window.
        window_duration: Dur,
        /// Fewest calls before rates are judged (default 10).
        minimum_calls: u32,
        /// First open period (default 5s).
        open_duration: Dur,
        /// Growth of the open period per failed probe (default 2.0).
        open_multiplier: f64,
        /// Longest open period (default 60s).
        max_open_duration: Dur,
        /// Probes in half-open (default 1).
        half_open_probes: u32,
        /// Statuses counted as failures (default [500, 502, 503, 504]).
        failure_statuses: Vec<u16>,
    }
);

section!(
    /// `[..bulkhead]`: absent means unbounded.
    BulkheadSpec {
        /// Calls in flight at once.
        max_concurrent: u32,
        /// Calls waiting for a slot beyond that (default 0: reject at once).
        max_queue: u32,
    }
);

section!(
    /// `[..rate_limit]`: absent means unlimited.
    RateLimitSpec {
        /// Sustained calls per second per key.
        per_second: u32,
        /// Calls allowed at once (default: per_second).
        burst: u32,
        /// `global` (default) or `header:<name>` to limit per header value.
        key: String,
    }
);

section!(
    /// `[..balance]`: see [`crate::balance::BalanceConfig`].
    BalanceSpec {
        /// round_robin, random, weighted, least_outstanding, peak_ewma (default), consistent_hash.
        strategy: Strategy,
        /// Request header whose value is the consistent-hash key.
        hash_header: String,
        /// Ring points per unit of weight (default 160).
        virtual_nodes: u32,
        /// Peak-EWMA decay (default 10s).
        ewma_decay: Dur,
        /// Failures in a row that eject an instance (default 5; 0 disables ejection).
        eject_after: u32,
        /// First ejection length (default 30s).
        base_ejection: Dur,
        /// Longest ejection (default 300s).
        max_ejection: Dur,
    }
);

/// One level of policy: `[defaults]`, `[policies.<name>]` or `[targets.<target>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Only in `[targets.*]`: the named policy this target starts from.
    pub policy: Option<String>,
    /// Overall budget of a call, retries included (default 10s).
    pub timeout: Option<Dur>,
    /// Budget of each attempt (default: none beyond `timeout`).
    pub attempt_timeout: Option<Dur>,
    /// Retries.
    pub retry: Option<RetrySpec>,
    /// Circuit breaker.
    pub breaker: Option<BreakerSpec>,
    /// Bulkhead.
    pub bulkhead: Option<BulkheadSpec>,
    /// Rate limit.
    pub rate_limit: Option<RateLimitSpec>,
    /// Load balancing and outlier ejection.
    pub balance: Option<BalanceSpec>,
}

fn merge_opt<T: Default>(base: Option<T>, over: Option<T>, merge: fn(T, T) -> T) -> Option<T> {
    match (base, over) {
        (Some(b), Some(o)) => Some(merge(b, o)),
        (b, o) => o.or(b),
    }
}

impl PolicySpec {
    /// `over` laid on top of this level.
    pub fn merge(self, over: Self) -> Self {
        Self {
            policy: over.policy.or(self.policy),
            timeout: over.timeout.or(self.timeout),
            attempt_timeout: over.attempt_timeout.or(self.attempt_timeout),
            retry: merge_opt(self.retry, over.retry, RetrySpec::merge),
            breaker: merge_opt(self.breaker, over.breaker, BreakerSpec::merge),
            bulkhead: merge_opt(self.bulkhead, over.bulkhead, BulkheadSpec::merge),
            rate_limit: merge_opt(self.rate_limit, over.rate_limit, RateLimitSpec::merge),
            balance: merge_opt(self.balance, over.balance, BalanceSpec::merge),
        }
    }
}
