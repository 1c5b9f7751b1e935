//! The contract of a rate limiter whose state is shared by several processes (gateway
//! replicas), so a quota holds for all of them together rather than once per replica.
//!
//! [`SharedRateLimiter`] is the contract, [`Quota`] and [`Decision`] its data, [`gcra`] the
//! arithmetic every implementation follows (Generic Cell Rate Algorithm on one theoretical
//! arrival time per key), [`MemorySharedLimiter`] the in-process implementation (one process
//! only: what the contract means, without a network), and `conformance` (feature
//! `conformance`) the suite every implementation runs from its own tests. `flotilla-redis`
//! implements it on a Redis server (feature `ratelimit`); the gateway calls it.

pub mod gcra;
mod memory;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

pub use memory::MemorySharedLimiter;

/// A GCRA quota: `burst` requests may arrive at once; after that one is admitted every
/// `emission_interval`. `requests` per `window` with a burst of `requests` is
/// `Quota::per_window(requests, window, requests)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    emission_interval: Duration,
    burst: u32,
}

impl Quota {
    /// `requests` per `window`, with bursts of up to `burst`. Refuses a zero count, a burst of
    /// zero, or a rate finer than one request per microsecond (the unit implementations count in).
    pub fn per_window(requests: u32, window: Duration, burst: u32) -> Result<Self, Error> {
        if requests == 0 {
            return Err(Error::invalid("requests", "must be at least 1"));
        }
        if burst == 0 {
            return Err(Error::invalid("burst", "must be at least 1"));
        }
        let emission_interval = window / requests;
        if emission_interval < Duration::from_micros(1) {
            return Err(Error::invalid(
                "requests",
                "more than one request per microsecond cannot be counted",
            ));
        }
        Ok(Self {
            emission_interval,
            burst,
        })
    }

    /// The time one request "costs": the window divided by the requests it allows.
    pub fn emission_interval(&self) -> Duration {
        self.emission_interval
    }

    /// How many requests may arrive at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and counted).
    pub allowed: bool,
    /// Requests the key may still make at once after this one (0 when refused).
    pub remaining: u32,
    /// When refused, how long until a request would be admitted; zero when allowed.
    pub retry_after: Duration,
    /// How long until the key's full burst is available again.
    pub reset_after: Duration,
}

/// A rate limiter whose state lives outside the process, shared by every process that uses
/// the same store and key.
///
/// Guarantee: when `acquire` returns `Ok` with `allowed`, the request was counted against
/// `key` atomically with every other caller of the same store, so across all of them at most
/// `quota.burst()` requests are admitted at once and then one per emission interval. A
/// refusal is not counted. Time is the store's clock, so the callers' clocks may disagree.
///
/// Errors: [`Error::LimiterUnavailable`] when the store cannot answer (unreachable, too
/// slow, failing); nothing was counted for sure, and the caller applies its own failure
/// policy (limit locally, admit, or refuse). Implementations should answer quickly and
/// callers should still bound the wait with a timeout.
#[async_trait]
pub trait SharedRateLimiter: Send + Sync + std::fmt::Debug {
    /// Counts one request for `key` under `quota`, or refuses it. The same key must always
    /// be used with the same quota; a key's state expires once it is back to a full burst.
    async fn acquire(&self, key: &str, quota: &Quota) -> Result<Decision, Error>;
}
