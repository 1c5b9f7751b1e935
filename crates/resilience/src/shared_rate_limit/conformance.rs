//! The suite every [`SharedRateLimiter`] runs from its own tests:
//! `flotilla_resilience::shared_rate_limit_suite!(harness);` where `harness` is an async fn
//! returning `Option<Harness>` (`None` skips, for a store that is not available).
//!
//! The cases use per-day quotas so that the time a test takes cannot refill a request: they
//! assert counts and waits, never how long anything took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use super::{Quota, SharedRateLimiter};

/// A limiter under test and a namespace that makes this run's keys unique.
#[derive(Debug, Clone)]
pub struct Harness {
    limiter: Arc<dyn SharedRateLimiter>,
    namespace: String,
}

impl Harness {
    /// Tests `limiter`, with every key under `namespace` (unique per run: stores are reused).
    pub fn new(limiter: Arc<dyn SharedRateLimiter>, namespace: &str) -> Self {
        Self {
            limiter,
            namespace: namespace.to_owned(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }
}

const DAY: Duration = Duration::from_secs(86_400);

fn per_day(requests: u32, burst: u32) -> Quota {
    Quota::per_window(requests, DAY, burst).unwrap()
}

/// A burst is admitted with a falling `remaining`; the next request is refused with the wait
/// for one emission interval.
pub async fn a_burst_is_admitted_then_the_next_request_waits_one_interval(h: Harness) {
    let q = per_day(4, 4);
    let key = h.key("burst");
    for expected in [3, 2, 1, 0] {
        let d = h.limiter.acquire(&key, &q).await.unwrap();
        assert!(d.allowed, "request within the burst refused");
        assert_eq!(d.remaining, expected);
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    let d = h.limiter.acquire(&key, &q).await.unwrap();
    assert!(!d.allowed, "request past the burst admitted");
    assert_eq!(d.remaining, 0);
    let interval = DAY / 4;
    let slack = Duration::from_secs(60);
    assert!(
        d.retry_after <= interval && d.retry_after > interval - slack,
        "retry_after {:?}, expected about {interval:?}",
        d.retry_after
    );
    assert!(d.reset_after > DAY - slack && d.reset_after <= DAY);
}

/// Different keys have separate budgets.
pub async fn keys_are_limited_separately(h: Harness) {
    let q = per_day(1, 1);
    assert!(h.limiter.acquire(&h.key("a"), &q).await.unwrap().allowed);
    assert!(!h.limiter.acquire(&h.key("a"), &q).await.unwrap().allowed);
    assert!(h.limiter.acquire(&h.key("b"), &q).await.unwrap().allowed);
}

/// A refused request is not counted: refusing many times does not push the wait further.
pub async fn refusals_are_not_counted(h: Harness) {
    let q = per_day(2, 1);
    let key = h.key("refusals");
    assert!(h.limiter.acquire(&key, &q).await.unwrap().allowed);
    let first = h.limiter.acquire(&key, &q).await.unwrap();
    for _ in 0..5 {
        let again = h.limiter.acquire(&key, &q).await.unwrap();
        assert!(!again.allowed);
        assert!(again.retry_after <= first.retry_after);
    }
}

/// Concurrent callers together get exactly the burst, never more.
pub async fn concurrent_callers_share_one_budget(h: Harness) {
    let q = per_day(10, 10);
    let key = h.key("concurrent");
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (limiter, key) = (h.limiter.clone(), key.clone());
            tokio::spawn(async move { limiter.acquire(&key, &q).await.unwrap().allowed })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 10);
}

/// Runs every case as a `#[tokio::test]` against `$harness().await`.
#[macro_export]
macro_rules! shared_rate_limit_suite {
    ($harness:path) => {
        $crate::shared_rate_limit_suite!(@cases $harness;
            a_burst_is_admitted_then_the_next_request_waits_one_interval,
            keys_are_limited_separately,
            refusals_are_not_counted,
            concurrent_callers_share_one_budget
        );
    };
    (@cases $harness:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = $harness().await else { return };
                $crate::shared_rate_limit::conformance::$case(h).await;
            }
        )*
    };
}
