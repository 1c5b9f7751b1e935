//! Checks of one policy level; every error names the dotted key of the bad value.

use std::time::Duration;

use super::spec::{
    BalanceSpec, BreakerSpec, BulkheadSpec, Dur, PolicySpec, RateLimitSpec, RetrySpec,
};
use crate::Error;

type Check = Result<(), Error>;

fn fail(at: &str, key: &str, reason: impl Into<String>) -> Check {
    Err(Error::invalid(format!("{at}.{key}"), reason))
}

fn dur(
    at: &str,
    key: &str,
    d: &Option<Dur>,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, Error> {
    let Some(d) = d else { return Ok(None) };
    let v = d
        .get()
        .map_err(|r| Error::invalid(format!("{at}.{key}"), r))?;
    if v < min || v > max {
        let reason = format!("must be between {min:?} and {max:?}, got {v:?}");
        return Err(Error::invalid(format!("{at}.{key}"), reason));
    }
    Ok(Some(v))
}

fn at_least<T: PartialOrd + Copy + std::fmt::Display>(
    at: &str,
    key: &str,
    v: Option<T>,
    min: T,
) -> Check {
    match v {
        Some(v) if v < min => fail(at, key, format!("must be >= {min}, got {v}")),
        _ => Ok(()),
    }
}

fn fraction(at: &str, key: &str, v: Option<f64>) -> Check {
    match v {
        Some(v) if !(0.0..=1.0).contains(&v) => {
            fail(at, key, format!("must be between 0 and 1, got {v}"))
        }
        _ => Ok(()),
    }
}

fn statuses(at: &str, key: &str, v: &Option<Vec<u16>>) -> Check {
    match v.iter().flatten().find(|s| !(100..=599).contains(*s)) {
        Some(s) => fail(at, key, format!("{s} is not an HTTP status")),
        None => Ok(()),
    }
}

fn header_name(at: &str, key: &str, name: &str) -> Check {
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(_) => Ok(()),
        Err(_) => fail(at, key, format!("{name:?} is not a valid header name")),
    }
}

const DAY: Duration = Duration::from_secs(86_400);
const NONZERO: Duration = Duration::from_millis(1);

/// Validates `spec`, found at dotted path `at`; `is_target` allows the `policy` key.
pub(super) fn policy(at: &str, spec: &PolicySpec, is_target: bool) -> Check {
    if spec.policy.is_some() && !is_target {
        return fail(at, "policy", "only [targets.*] may name a policy");
    }
    dur(at, "timeout", &spec.timeout, NONZERO, DAY)?;
    dur(at, "attempt_timeout", &spec.attempt_timeout, NONZERO, DAY)?;
    if let Some(r) = &spec.retry {
        retry(&format!("{at}.retry"), r)?;
    }
    if let Some(b) = &spec.breaker {
        breaker(&format!("{at}.breaker"), b)?;
    }
    if let Some(b) = &spec.bulkhead {
        bulkhead(&format!("{at}.bulkhead"), b)?;
    }
    if let Some(r) = &spec.rate_limit {
        rate_limit(&format!("{at}.rate_limit"), r)?;
    }
    if let Some(b) = &spec.balance {
        balance(&format!("{at}.balance"), b)?;
    }
    Ok(())
}

fn retry(at: &str, r: &RetrySpec) -> Check {
    at_least(at, "max_attempts", r.max_attempts, 1)?;
    if r.max_attempts.is_some_and(|n| n > 10) {
        return fail(at, "max_attempts", "must be <= 10");
    }
    let base = dur(at, "base_delay", &r.base_delay, Duration::ZERO, DAY)?;
    let max = dur(at, "max_delay", &r.max_delay, Duration::ZERO, DAY)?;
    if let (Some(b), Some(m)) = (base, max)
        && b > m
    {
        return fail(at, "base_delay", "must not exceed max_delay");
    }
    statuses(at, "statuses", &r.statuses)?;
    dur(
        at,
        "max_retry_after",
        &r.max_retry_after,
        Duration::ZERO,
        DAY,
    )?;
    if r.budget_ratio.is_some_and(|v| !(0.0..=1000.0).contains(&v)) {
        return fail(at, "budget_ratio", "must be between 0 and 1000");
    }
    if r.budget_min_per_sec.is_some_and(|v| v >= i32::MAX as u32) {
        return fail(at, "budget_min_per_sec", "is too large");
    }
    dur(
        at,
        "budget_ttl",
        &r.budget_ttl,
        Duration::from_secs(1),
        Duration::from_secs(60),
    )?;
    Ok(())
}

fn breaker(at: &str, b: &BreakerSpec) -> Check {
    fraction(at, "failure_rate", b.failure_rate)?;
    fraction(at, "slow_call_rate", b.slow_call_rate)?;
    dur(
        at,
        "slow_call_duration",
        &b.slow_call_duration,
        NONZERO,
        DAY,
    )?;
    at_least(at, "window_size", b.window_size, 1)?;
    if b.window_size.is_some() && b.window_duration.is_some() {
        return fail(
            at,
            "window_duration",
            "set either window_size or window_duration, not both",
        );
    }
    dur(
        at,
        "window_duration",
        &b.window_duration,
        Duration::from_secs(1),
        DAY,
    )?;
    at_least(at, "minimum_calls", b.minimum_calls, 1)?;
    dur(at, "open_duration", &b.open_duration, NONZERO, DAY)?;
    at_least(at, "open_multiplier", b.open_multiplier, 1.0)?;
    dur(at, "max_open_duration", &b.max_open_duration, NONZERO, DAY)?;
    at_least(at, "half_open_probes", b.half_open_probes, 1)?;
    statuses(at, "failure_statuses", &b.failure_statuses)
}

fn bulkhead(at: &str, b: &BulkheadSpec) -> Check {
    at_least(at, "max_concurrent", b.max_concurrent, 1)
}

fn rate_limit(at: &str, r: &RateLimitSpec) -> Check {
    at_least(at, "per_second", r.per_second, 1)?;
    at_least(at, "burst", r.burst, 1)?;
    match r.key.as_deref() {
        None | Some("global") => Ok(()),
        Some(k) => match k.strip_prefix("header:") {
            Some(name) => header_name(at, "key", name),
            None => fail(
                at,
                "key",
                format!("{k:?} must be \"global\" or \"header:<name>\""),
            ),
        },
    }
}

fn balance(at: &str, b: &BalanceSpec) -> Check {
    if let Some(h) = &b.hash_header {
        header_name(at, "hash_header", h)?;
    }
    at_least(at, "virtual_nodes", b.virtual_nodes, 1)?;
    if b.virtual_nodes.is_some_and(|v| v > 10_000) {
        return fail(at, "virtual_nodes", "must be <= 10000");
    }
    dur(at, "ewma_decay", &b.ewma_decay, NONZERO, DAY)?;
    dur(at, "base_ejection", &b.base_ejection, NONZERO, DAY)?;
    dur(at, "max_ejection", &b.max_ejection, NONZERO, DAY)?;
    Ok(())
}
