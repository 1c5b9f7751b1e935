//! The gateway-wide store: a moka cache weighed by stored bytes, whose values are the
//! variants (one per secondary key, RFC 9111 §4.1) of one primary key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::header::HeaderMap;
use http::{HeaderValue, StatusCode};
use moka::ops::compute::Op;
use prometheus_client::metrics::gauge::Gauge;

use super::key::{PrimaryKey, VaryValues, vary_matches};
use super::policy::Freshness;

/// Most variants kept per primary key; the oldest goes first.
const MAX_VARIANTS: usize = 16;

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    /// Its status.
    pub status: StatusCode,
    /// Its headers (end-to-end only, without `Age`).
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
    /// The secondary key it was stored under.
    pub vary: VaryValues,
    /// Its age and freshness.
    pub freshness: Freshness,
    revalidating: AtomicBool,
}

impl Entry {
    /// A new entry.
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        vary: VaryValues,
        freshness: Freshness,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            vary,
            freshness,
            revalidating: AtomicBool::new(false),
        }
    }

    /// Claims the one background revalidation; false when one is already running.
    pub fn claim_revalidation(&self) -> bool {
        !self.revalidating.swap(true, Ordering::AcqRel)
    }

    /// Lets another background revalidation start (after this one failed).
    pub fn release_revalidation(&self) {
        self.revalidating.store(false, Ordering::Release);
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v): (_, &HeaderValue)| k.as_str().len() + v.len() + 4)
            .sum();
        (self.body.len() + headers + 128) as u64
    }
}

/// Every stored variant of one primary key, newest first.
#[derive(Debug)]
pub struct Variants {
    entries: Vec<Arc<Entry>>,
    weight: u64,
    /// The route's stored-bytes gauge, decreased when this value leaves the store.
    gauge: Gauge,
}

/// The store. Cheap to share; every method is synchronous and brief.
#[derive(Debug)]
pub struct Store {
    cache: moka::sync::Cache<PrimaryKey, Arc<Variants>>,
    max_bytes: u64,
}

/// Sizes and counters for the admin API.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    /// Primary keys stored.
    pub entries: u64,
    /// Bytes stored (bodies and headers).
    pub bytes: u64,
    /// The configured limit.
    pub max_bytes: u64,
    /// Requests answered from the store without contacting the origin.
    pub hits: u64,
    /// Requests that found nothing usable and went to the origin.
    pub misses: u64,
    /// Requests that waited for another request's fetch of the same key.
    pub collapsed: u64,
}

impl Store {
    /// An empty store holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &PrimaryKey, v: &Arc<Variants>| {
                u32::try_from(v.weight).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .eviction_listener(|_, v: Arc<Variants>, _| {
                v.gauge.dec_by(i64::try_from(v.weight).unwrap_or(i64::MAX));
            })
            .build();
        Self { cache, max_bytes }
    }

    /// The newest stored variant of `key` whose secondary key matches `request`.
    pub fn find(&self, key: &PrimaryKey, request: &HeaderMap) -> Option<Arc<Entry>> {
        let variants = self.cache.get(key)?;
        variants
            .entries
            .iter()
            .find(|e| vary_matches(&e.vary, request))
            .cloned()
    }

    /// Stores `entry` under `key`, replacing the variant with the same secondary key.
    pub fn insert(&self, key: PrimaryKey, entry: Arc<Entry>, gauge: &Gauge) {
        self.cache.entry(key).and_compute_with(|existing| {
            let mut entries = vec![entry.clone()];
            if let Some(old) = existing {
                let others = old.value().entries.iter().filter(|e| e.vary != entry.vary);
                entries.extend(others.take(MAX_VARIANTS - 1).cloned());
            }
            let weight = entries.iter().map(|e| e.weight()).sum();
            gauge.inc_by(i64::try_from(weight).unwrap_or(i64::MAX));
            Op::Put(Arc::new(Variants {
                entries,
                weight,
                gauge: gauge.clone(),
            }))
        });
    }

    /// Drops every variant of `key`.
    pub fn remove(&self, key: &PrimaryKey) {
        self.cache.invalidate(key);
    }

    /// Drops every entry for which `matches` holds. It takes effect at once for lookups;
    /// memory is reclaimed by the store's maintenance.
    pub fn purge_if(&self, matches: impl Fn(&PrimaryKey) -> bool + Send + Sync + 'static) {
        if self
            .cache
            .invalidate_entries_if(move |k, _| matches(k))
            .is_err()
        {
            // Only possible without `support_invalidation_closures`, which `new` sets.
            self.cache.invalidate_all();
        }
    }

    /// Drops everything.
    pub fn purge_all(&self) {
        self.cache.invalidate_all();
    }

    /// Current sizes (after pending maintenance, so they are exact).
    pub fn stats(&self, [hits, misses, collapsed]: [&AtomicU64; 3]) -> Stats {
        self.cache.run_pending_tasks();
        Stats {
            entries: self.cache.entry_count(),
            bytes: self.cache.weighted_size(),
            max_bytes: self.max_bytes,
            hits: hits.load(Ordering::Relaxed),
            misses: misses.load(Ordering::Relaxed),
            collapsed: collapsed.load(Ordering::Relaxed),
        }
    }
}
