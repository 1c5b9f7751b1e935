//! The shared rate limiter's conformance suite against the in-process implementation.

use std::sync::Arc;

use flotilla_resilience::shared_rate_limit::MemorySharedLimiter;
use flotilla_resilience::shared_rate_limit::conformance::Harness;

async fn harness() -> Option<Harness> {
    Some(Harness::new(
        Arc::new(MemorySharedLimiter::default()),
        "memory",
    ))
}

flotilla_resilience::shared_rate_limit_suite!(harness);
