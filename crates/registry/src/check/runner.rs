//! Scheduling checks: one small task per checked instance, started at a random offset within
//! its interval (so thousands of checks never fire on one tick), each probe bounded by its own
//! deadline and by a registry-wide semaphore.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::ServiceName;
use flotilla_discovery::HealthStatus;
use rand::Rng as _;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, timeout};

use super::{CheckKind, CheckSpec, Counters, probe};
use crate::Registry;

/// Tracks how long an instance has been critical, to apply `deregister_after`.
#[derive(Debug, Default)]
struct CriticalTimer(Option<Instant>);

impl CriticalTimer {
    /// Records `status`; true when the instance has been critical for `after` or longer.
    fn due(&mut self, status: HealthStatus, after: Option<Duration>) -> bool {
        if status != HealthStatus::Critical {
            self.0 = None;
            return false;
        }
        let since = *self.0.get_or_insert_with(Instant::now);
        after.is_some_and(|a| since.elapsed() >= a)
    }

    /// Time left before `after` is reached, when critical.
    fn remaining(&self, after: Option<Duration>) -> Option<Duration> {
        Some(after?.saturating_sub(self.0?.elapsed()))
    }
}

/// A uniformly random offset in `[0, interval)`.
fn jitter(interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(0..ms))
}

/// Runs the check of one instance until it is deregistered or the task is aborted.
pub(crate) async fn run(
    registry: Registry,
    service: ServiceName,
    id: String,
    spec: CheckSpec,
    heartbeat: Arc<Notify>,
) {
    match spec.kind {
        CheckKind::Ttl { ttl } => ttl_loop(registry, service, id, &spec, ttl, heartbeat).await,
        _ => probe_loop(registry, service, id, &spec).await,
    }
}

async fn probe_loop(registry: Registry, service: ServiceName, id: String, spec: &CheckSpec) {
    let mut counters = Counters::default();
    let mut critical = CriticalTimer::default();
    sleep(jitter(spec.interval)).await;
    loop {
        let Some(record) = registry.record(&service, &id) else {
            return;
        };
        let started = Instant::now();
        let outcome = {
            let _permit = registry.check_permit().await;
            probe::run(registry.http_client(), spec, &record.instance).await
        };
        registry
            .metrics()
            .check_ran(spec.kind_label(), outcome.status, started.elapsed());
        let next = counters.apply(spec, record.status, outcome.status);
        if !registry
            .apply_check(&service, &id, next, outcome.output)
            .await
        {
            return;
        }
        if critical.due(next, spec.deregister_after) {
            registry.reap(&service, &id).await;
            return;
        }
        sleep(spec.interval).await;
    }
}

async fn ttl_loop(
    registry: Registry,
    service: ServiceName,
    id: String,
    spec: &CheckSpec,
    ttl: Duration,
    heartbeat: Arc<Notify>,
) {
    let mut critical = CriticalTimer::default();
    loop {
        let wait = critical
            .remaining(spec.deregister_after)
            .map_or(ttl, |r| r.min(ttl));
        let expired = timeout(wait, heartbeat.notified()).await.is_err();
        let Some(record) = registry.record(&service, &id) else {
            return;
        };
        let mut status = record.status;
        if expired && status != HealthStatus::Critical && status != HealthStatus::Draining {
            registry
                .metrics()
                .check_ran("ttl", HealthStatus::Critical, Duration::ZERO);
            let output = format!("TTL of {ttl:?} expired without a heartbeat");
            if !registry
                .apply_check(&service, &id, HealthStatus::Critical, output)
                .await
            {
                return;
            }
            status = HealthStatus::Critical;
        }
        if critical.due(status, spec.deregister_after) {
            registry.reap(&service, &id).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn critical_timer_is_due_only_after_continuous_critical_time() {
        let mut t = CriticalTimer::default();
        let after = Some(Duration::from_secs(5));
        assert!(!t.due(HealthStatus::Critical, after));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!t.due(HealthStatus::Critical, after));
        assert_eq!(t.remaining(after), Some(Duration::from_secs(2)));
        assert!(
            !t.due(HealthStatus::Passing, after),
            "a pass resets the timer"
        );
        assert!(!t.due(HealthStatus::Critical, after));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(t.due(HealthStatus::Critical, after));
        assert!(
            !t.due(HealthStatus::Critical, None),
            "no deregister_after, never due"
        );
    }

    #[test]
    fn jitter_stays_within_the_interval() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_millis(250)) < Duration::from_millis(250));
        }
    }
}
