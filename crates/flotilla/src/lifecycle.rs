//! The service's lifecycle state, shared by readiness, the shutdown sequence and hooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Bound but start-up hooks still running: not ready.
    Starting,
    /// Serving: ready.
    Running,
    /// Shutdown began: still serving in-flight and late requests, but not ready.
    Draining,
    /// The listener closed.
    Stopped,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Draining,
            _ => Self::Stopped,
        }
    }
}

/// Shared, cheaply cloned lifecycle state.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    state: Arc<AtomicU8>,
    started: Instant,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            state: Arc::new(AtomicU8::new(State::Starting as u8)),
            started: Instant::now(),
        }
    }
}

impl Lifecycle {
    /// The current state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves to `state`. States only move forward; a backward move is ignored.
    pub fn advance(&self, state: State) {
        self.state.fetch_max(state as u8, Ordering::AcqRel);
    }

    /// Seconds since the service was built.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_only_moves_forward() {
        let l = Lifecycle::default();
        assert_eq!(l.state(), State::Starting);
        l.advance(State::Draining);
        l.advance(State::Running);
        assert_eq!(l.state(), State::Draining);
    }
}
