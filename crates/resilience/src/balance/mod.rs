//! Load balancing over the instances of one upstream, with passive outlier ejection.
//!
//! Strategies: round robin, random, weighted random, least outstanding requests,
//! power-of-two-choices over peak-EWMA latency, and consistent hashing with virtual nodes.
//!
//! tower has P2C and peak-EWMA (`tower::balance::p2c`, `tower::load::PeakEwma`), but they
//! balance over one `Service` per endpoint driven through `poll_ready` on `&mut self`, fed by a
//! `Discover` stream. Our callers hold one pooled HTTP client for every instance and pick the
//! instance synchronously, per request, from a shared discovery cache that many clones of a
//! client read at once; a per-endpoint service set would duplicate the pool and serialise
//! callers on one `&mut` balancer. So the same algorithms are written here over shared atomic
//! per-instance statistics ([`Endpoint`]), and the transport stays the caller's.
//!
//! Outlier ejection: `consecutive_failures` failures in a row eject an instance for
//! `base_ejection * n` (n = its ejections since it last succeeded), at most `max_ejection`.
//! The last instance that is not ejected is never ejected: a degraded upstream is better than
//! none.

mod endpoint;
mod ring;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flotilla_core::ServiceInstance;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use endpoint::Endpoint;
pub use ring::hash;

use crate::metrics::Metrics;
use ring::Ring;

/// How an instance is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each instance in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, in proportion to each instance's `weight`.
    Weighted,
    /// The instance with the fewest requests in flight.
    LeastOutstanding,
    /// The cheaper of two random instances, cost = peak-EWMA latency x (outstanding + 1).
    #[default]
    PeakEwma,
    /// The instance owning the request key on a hash ring (random without a key).
    ConsistentHash,
}

/// Passive outlier-ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failures in a row that eject an instance; 0 disables ejection.
    pub consecutive_failures: u32,
    /// The first ejection's length; later ones grow linearly.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// Resolved balancing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// The strategy.
    pub strategy: Strategy,
    /// How fast peak-EWMA forgets a slow sample.
    pub ewma_decay: Duration,
    /// The latency assumed for an instance before its first answer.
    pub default_rtt: Duration,
    /// Ring points per unit of weight, for consistent hashing.
    pub virtual_nodes: u32,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            ewma_decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
            virtual_nodes: 160,
            outlier: OutlierConfig::default(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    upstream: Arc<str>,
    config: BalanceConfig,
    metrics: Option<Metrics>,
    epoch: Instant,
    /// Serialises ejection decisions, so two instances failing at once cannot both see the
    /// other available and eject every instance.
    ejecting: std::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Snapshot {
    revision: Option<u64>,
    endpoints: Vec<Arc<Endpoint>>,
    ring: Ring,
}

/// Picks instances of one upstream; share it (`Arc`) between all callers of that upstream.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    snapshot: RwLock<Arc<Snapshot>>,
    next: AtomicUsize,
}

/// A chosen instance. Report the outcome with [`Pick::finish`]; dropping it unfinished (a
/// cancelled call) only ends its outstanding count.
#[derive(Debug)]
pub struct Pick {
    endpoint: Arc<Endpoint>,
    snapshot: Arc<Snapshot>,
    shared: Arc<Shared>,
    started: Instant,
    finished: bool,
}

impl Balancer {
    /// A balancer for `upstream` with no instances yet.
    pub fn new(upstream: &str, config: BalanceConfig, metrics: Option<Metrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                upstream: upstream.into(),
                config,
                metrics,
                epoch: Instant::now(),
                ejecting: Default::default(),
            }),
            snapshot: RwLock::default(),
            next: AtomicUsize::new(0),
        }
    }

    /// Replaces the instances when `revision` differs from the last update; statistics of
    /// instances that stay (same id) are kept.
    pub fn update<'a>(
        &self,
        revision: u64,
        instances: impl IntoIterator<Item = &'a ServiceInstance>,
    ) {
        if self.read().revision == Some(revision) {
            return;
        }
        let old = self.read();
        let c = &self.shared.config;
        let endpoints: Vec<Arc<Endpoint>> = instances
            .into_iter()
            .map(|i| {
                match old
                    .endpoints
                    .iter()
                    .find(|e| e.instance.id == i.id && e.instance == *i)
                {
                    Some(e) => e.clone(),
                    None => Arc::new(Endpoint::new(i.clone(), c.default_rtt)),
                }
            })
            .collect();
        let ring = if c.strategy == Strategy::ConsistentHash {
            Ring::new(
                endpoints
                    .iter()
                    .map(|e| (e.instance.id.as_str(), e.instance.weight)),
                c.virtual_nodes,
            )
        } else {
            Ring::default()
        };
        let snap = Arc::new(Snapshot {
            revision: Some(revision),
            endpoints,
            ring,
        });
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snap;
    }

    /// The current endpoints with their statistics.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.read().endpoints.clone()
    }

    fn read(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Chooses an instance; `key` drives consistent hashing. `None` when there is no instance
    /// (or, for weighted balancing, none with a positive weight).
    pub fn pick(&self, key: Option<&[u8]>) -> Option<Pick> {
        let snap = self.read();
        let n = snap.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = self.shared.now_ns();
        let all_ejected = snap.endpoints.iter().all(|e| e.is_ejected(now));
        let usable = |i: usize| all_ejected || !snap.endpoints[i].is_ejected(now);
        let index = self.choose(&snap, key, &usable)?;
        let endpoint = snap.endpoints[index].clone();
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            endpoint,
            snapshot: snap,
            shared: self.shared.clone(),
            started: Instant::now(),
            finished: false,
        })
    }

    fn choose(
        &self,
        snap: &Snapshot,
        key: Option<&[u8]>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = snap.endpoints.len();
        let first_usable_from = |start: usize| (0..n).map(|k| (start + k) % n).find(|&i| usable(i));
        let mut rng = rand::rng();
        match self.shared.config.strategy {
            Strategy::RoundRobin => first_usable_from(self.next.fetch_add(1, Ordering::Relaxed)),
            Strategy::Random => first_usable_from(rng.random_range(0..n)),
            Strategy::Weighted => weighted(snap, usable, &mut rng),
            Strategy::LeastOutstanding => {
                let start = rng.random_range(0..n);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| snap.endpoints[i].outstanding())
            }
            Strategy::PeakEwma => {
                let a = first_usable_from(rng.random_range(0..n))?;
                // A second choice distinct from the first, so the comparison is never moot.
                let offset = if n > 1 {
                    1 + rng.random_range(0..n - 1)
                } else {
                    0
                };
                let b = first_usable_from((a + offset) % n)?;
                let cost = |i: usize| snap.endpoints[i].cost();
                Some(if cost(b) < cost(a) { b } else { a })
            }
            Strategy::ConsistentHash => match key {
                Some(key) => snap.ring.walk(key).find(|&i| usable(i)),
                None => first_usable_from(rng.random_range(0..n)),
            },
        }
    }
}

fn weighted(snap: &Snapshot, usable: &dyn Fn(usize) -> bool, rng: &mut impl Rng) -> Option<usize> {
    let weight = |i: usize| {
        if usable(i) {
            u64::from(snap.endpoints[i].instance.weight)
        } else {
            0
        }
    };
    let total: u64 = (0..snap.endpoints.len()).map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.random_range(0..total);
    (0..snap.endpoints.len()).find(|&i| {
        let w = weight(i);
        if point < w {
            return true;
        }
        point -= w;
        false
    })
}

impl Shared {
    fn now_ns(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
    }
}

impl Pick {
    /// The chosen instance.
    pub fn instance(&self) -> &ServiceInstance {
        &self.endpoint.instance
    }

    /// Ends the call: records its latency and whether it succeeded (for outlier ejection).
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
        let c = &self.shared.config;
        self.endpoint.observe(self.started.elapsed(), c.ewma_decay);
        if success {
            let mut s = self.endpoint.stats();
            s.consecutive_failures = 0;
            s.ejections = 0;
        } else {
            self.on_failure();
        }
    }

    fn on_failure(&self) {
        let o = self.shared.config.outlier;
        let _deciding = self
            .shared
            .ejecting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut s = self.endpoint.stats();
        s.consecutive_failures += 1;
        let now = self.shared.now_ns();
        if o.consecutive_failures == 0
            || s.consecutive_failures < o.consecutive_failures
            || self.endpoint.is_ejected(now)
        {
            return;
        }
        let others_available = self
            .snapshot
            .endpoints
            .iter()
            .any(|e| !Arc::ptr_eq(e, &self.endpoint) && !e.is_ejected(now));
        if !others_available {
            return;
        }
        s.ejections += 1;
        s.consecutive_failures = 0;
        let length = o
            .base_ejection
            .saturating_mul(s.ejections)
            .min(o.max_ejection);
        self.endpoint
            .ejected_until
            .store(now + length.as_nanos() as u64, Ordering::Relaxed);
        tracing::warn!(upstream = %self.shared.upstream, instance = %self.endpoint.instance.id, ?length, "outlier ejected");
        if let Some(m) = &self.shared.metrics {
            m.ejected(&self.shared.upstream);
        }
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.finished {
            self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
