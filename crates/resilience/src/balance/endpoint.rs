//! Per-instance load statistics: outstanding requests, peak-EWMA latency, outlier state.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use flotilla_core::ServiceInstance;
use tokio::time::Instant;

/// One instance as the balancer sees it.
#[derive(Debug)]
pub struct Endpoint {
    pub(crate) instance: ServiceInstance,
    pub(crate) outstanding: AtomicU32,
    /// Nanoseconds after the balancer's epoch until which the instance is ejected; 0 = never.
    pub(crate) ejected_until: AtomicU64,
    pub(crate) stats: Mutex<Stats>,
}

#[derive(Debug)]
pub(crate) struct Stats {
    /// Peak-EWMA round-trip time in nanoseconds.
    pub(crate) ewma_ns: f64,
    pub(crate) stamp: Instant,
    pub(crate) consecutive_failures: u32,
    pub(crate) ejections: u32,
}

impl Endpoint {
    pub(crate) fn new(instance: ServiceInstance, default_rtt: Duration) -> Self {
        Self {
            instance,
            outstanding: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            stats: Mutex::new(Stats {
                ewma_ns: default_rtt.as_nanos() as f64,
                stamp: Instant::now(),
                consecutive_failures: 0,
                ejections: 0,
            }),
        }
    }

    /// The instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// Requests sent to this instance and not finished yet.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        // A few numbers, always consistent: a poisoned lock is still usable.
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peak-EWMA load estimate: latency weighted by the queue in front of a new request.
    pub(crate) fn cost(&self) -> f64 {
        self.stats().ewma_ns * f64::from(self.outstanding() + 1)
    }

    /// Folds one observed round trip into the peak-EWMA: a slower sample replaces the
    /// estimate at once (peak), a faster one pulls it down with a time-based decay.
    pub(crate) fn observe(&self, rtt: Duration, decay: Duration) {
        let mut s = self.stats();
        let now = Instant::now();
        let rtt = rtt.as_nanos() as f64;
        let elapsed = now.saturating_duration_since(s.stamp).as_nanos() as f64;
        s.stamp = now;
        if rtt > s.ewma_ns {
            s.ewma_ns = rtt;
        } else {
            let w = (-elapsed / (decay.as_nanos().max(1) as f64)).exp();
            s.ewma_ns = s.ewma_ns * w + rtt * (1.0 - w);
        }
    }

    pub(crate) fn is_ejected(&self, now_ns: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ns
    }
}
