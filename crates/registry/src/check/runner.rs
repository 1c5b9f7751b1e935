//! Scheduling checks: one small task per checked instance, each probe bounded by its own
//! deadline and by a registry-wide semaphore. A newly registered instance is probed at once (it
//! is not routed to until a probe passes); checks of the catalog loaded at start begin at a
//! random offset within their interval, so a restart never fires thousands on one tick.

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

/// When a check task runs its first probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstProbe {
    /// At once: a new or changed registration.
    Now,
    /// At a random offset within the interval: instances loaded from the catalog at start.
    Jittered,
}

impl FirstProbe {
    fn delay(self, interval: Duration) -> Duration {
        match self {
            Self::Now => Duration::ZERO,
            Self::Jittered => jitter(interval),
        }
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
    first: FirstProbe,
    heartbeat: Arc<Notify>,
) {
    match spec.kind {
        CheckKind::Ttl { ttl } => ttl_loop(registry, service, id, &spec, ttl, heartbeat).await,
        _ => {
            sleep(first.delay(spec.interval)).await;
            probe_loop(registry, service, id, &spec).await;
        }
    }
}

async fn probe_loop(registry: Registry, service: ServiceName, id: String, spec: &CheckSpec) {
    let mut counters = Counters::default();
    let mut critical = CriticalTimer::default();
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
        let next = counters.apply(spec, record.checked_status(), outcome.status);
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
    let mut next_wait = ttl;
    loop {
        let wait = critical
            .remaining(spec.deregister_after)
            .map_or(next_wait, |r| r.min(next_wait));
        next_wait = ttl;
        let mut expired = timeout(wait, heartbeat.notified()).await.is_err();
        // Over a shared catalog the heartbeat may have reached another replica.
        if expired && let Some(left) = registry.ttl_left(&service, &id, ttl).await {
            expired = false;
            next_wait = left.max(Duration::from_millis(10));
        }
        let Some(record) = registry.record(&service, &id) else {
            return;
        };
        let mut status = record.checked_status();
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
    fn a_new_registration_is_probed_at_once_and_a_loaded_one_within_its_interval() {
        let interval = Duration::from_secs(3600);
        assert_eq!(FirstProbe::Now.delay(interval), Duration::ZERO);
        assert!(FirstProbe::Jittered.delay(interval) < interval);
    }

    #[test]
    fn jitter_stays_within_the_interval() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_millis(250)) < Duration::from_millis(250));
        }
    }
}
