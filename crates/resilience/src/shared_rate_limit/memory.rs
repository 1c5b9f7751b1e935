//! The in-process [`SharedRateLimiter`]: the contract's meaning without a network. Shared
//! only by the clones of one value in one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::time::Instant;

use super::gcra::step;
use super::{Decision, Quota, SharedRateLimiter};
use crate::Error;

/// TATs by key, measured from the limiter's creation on tokio's clock (paused in tests).
#[derive(Debug, Clone)]
pub struct MemorySharedLimiter {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    tats: HashMap<String, u64>,
    /// Size at which expired keys are swept next: sweeping when the map doubles keeps the
    /// cost per call constant on average.
    sweep_at: usize,
}

/// The smallest map that is swept.
const MIN_SWEEP: usize = 1024;

impl Default for MemorySharedLimiter {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                origin: Instant::now(),
                tats: HashMap::new(),
                sweep_at: MIN_SWEEP,
            })),
        }
    }
}

impl MemorySharedLimiter {
    /// How many keys hold state (keys back at a full burst are dropped in periodic sweeps).
    pub fn tracked(&self) -> usize {
        self.inner.lock().map_or(0, |s| s.tats.len())
    }
}

#[async_trait]
impl SharedRateLimiter for MemorySharedLimiter {
    async fn acquire(&self, key: &str, quota: &Quota) -> Result<Decision, Error> {
        let mut state = self
            .inner
            .lock()
            .map_err(|_| Error::LimiterUnavailable("state poisoned by a panic".into()))?;
        let now = u64::try_from(state.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        if state.tats.len() >= state.sweep_at {
            // Expired keys are what Redis's PEXPIRE drops; here they go in batches.
            state.tats.retain(|_, tat| *tat > now);
            state.sweep_at = (state.tats.len() * 2).max(MIN_SWEEP);
        }
        let s = step(state.tats.get(key).copied(), now, quota);
        if let Some(tat) = s.new_tat {
            state.tats.insert(key.to_owned(), tat);
        }
        Ok(s.decision)
    }
}
