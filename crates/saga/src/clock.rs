//! The orchestrator's default clock: wall time read once, then advanced by tokio's monotonic
//! clock. Timers are written into events as wall-clock instants and waited for with tokio
//! sleeps; reading both from one source keeps them consistent, and lets tests pause and
//! advance tokio time to fire saga deadlines and backoffs without sleeping.

use std::time::SystemTime;

use flotilla_core::Clock;
use tokio::time::Instant;

/// Wall time at creation plus tokio time elapsed since; clones share the origin.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: SystemTime,
    mono: Instant,
}

impl TokioClock {
    /// A clock starting at the current wall time. Call inside a tokio runtime.
    pub fn new() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }
}
