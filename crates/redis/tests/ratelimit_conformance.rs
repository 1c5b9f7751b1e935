//! The shared rate limiter's conformance suite against the Redis server on this machine.

use std::sync::Arc;

use flotilla_redis::{RateLimitOptions, RedisRateLimiter};
use flotilla_resilience::shared_rate_limit::conformance::Harness;
use flotilla_testkit::{Backend, backend, unique_name};

/// Keys live under a prefix unique to this run and expire by themselves (a per-day key lasts
/// a day at most).
async fn harness() -> Option<Harness> {
    let url = backend(Backend::Redis, "redis shared rate limiter conformance")?;
    let opts = RateLimitOptions {
        url,
        prefix: unique_name("rl"),
        ..RateLimitOptions::default()
    };
    let limiter = RedisRateLimiter::new(&opts).unwrap_or_else(|e| panic!("Redis limiter: {e}"));
    Some(Harness::new(Arc::new(limiter), "conformance"))
}

flotilla_resilience::shared_rate_limit_suite!(harness);
