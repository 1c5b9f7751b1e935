//! Circuit breaker: stops calling an upstream that is failing, and lets a few probes find out
//! when it has recovered.
//!
//! Closed: calls pass and outcomes are recorded. The breaker opens on `consecutive_failures`
//! in a row, or when over the rolling window (with at least `minimum_calls` calls) the failure
//! rate or the slow-call rate reaches its threshold. Open: calls fail fast with
//! [`Error::CircuitOpen`] for the open duration, which grows by `open_multiplier` each time a
//! probe fails, up to `max_open_duration`. Half-open: at most `half_open_probes` calls pass;
//! when that many succeed the breaker closes, and one failure reopens it.
//!
//! One [`CircuitBreaker`] is shared by every caller of an upstream, through a [`Registry`].
//! Each state change is published on a broadcast channel ([`CircuitBreaker::subscribe`]) and
//! counted in [`Metrics`].

mod layer;
mod registry;
mod window;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

pub use layer::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};
pub use registry::Registry;
pub use window::WindowKind;

use crate::Error;
use crate::metrics::Metrics;
use window::Window;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls pass.
    Closed = 0,
    /// Calls are refused.
    Open = 1,
    /// A bounded number of probe calls pass.
    HalfOpen = 2,
}

impl State {
    /// The state's name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A state change, as published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The breaker's upstream.
    pub upstream: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// Resolved breaker settings (see [`crate::policy`] for keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row; `None` disables the rule.
    pub consecutive_failures: Option<u32>,
    /// Open when this fraction (0..=1] of the window's calls failed; `None` disables the rule.
    pub failure_rate: Option<f64>,
    /// Open when this fraction of the window's calls were slow; `None` disables the rule.
    pub slow_call_rate: Option<f64>,
    /// A call taking at least this long is slow.
    pub slow_call_duration: Duration,
    /// The rolling window the rates are computed over.
    pub window: WindowKind,
    /// Rates are not judged over fewer calls than this.
    pub minimum_calls: u32,
    /// How long the breaker stays open the first time.
    pub open_duration: Duration,
    /// Each reopening without a close in between multiplies the open duration by this.
    pub open_multiplier: f64,
    /// The longest open duration.
    pub max_open_duration: Duration,
    /// Probe calls allowed (and successes needed to close) in half-open.
    pub half_open_probes: u32,
    /// Response statuses that count as failures.
    pub failure_statuses: Vec<u16>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: Some(0.5),
            slow_call_rate: None,
            slow_call_duration: Duration::from_secs(2),
            window: WindowKind::Count(20),
            minimum_calls: 10,
            open_duration: Duration::from_secs(5),
            open_multiplier: 2.0,
            max_open_duration: Duration::from_secs(60),
            half_open_probes: 1,
            failure_statuses: vec![500, 502, 503, 504],
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    consecutive: u32,
    window: Window,
    /// Openings since the breaker last closed; drives the growing open duration.
    reopenings: u32,
    /// Bumped on every transition so outcomes of calls admitted in an earlier state are ignored.
    generation: u64,
}

/// A circuit breaker for one upstream; share it through an `Arc`.
#[derive(Debug)]
pub struct CircuitBreaker {
    upstream: Arc<str>,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Transition>,
    metrics: Option<Metrics>,
}

/// Admission to call through a breaker; report the outcome with [`Permit::record`]. Dropping
/// it unrecorded (a cancelled call) frees a half-open probe slot without judging the upstream.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    recorded: bool,
}

impl CircuitBreaker {
    /// A closed breaker for `upstream`.
    pub fn new(upstream: &str, config: BreakerConfig, metrics: Option<Metrics>) -> Self {
        let window = Window::new(config.window);
        Self {
            upstream: upstream.into(),
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                consecutive: 0,
                window,
                reopenings: 0,
                generation: 0,
            }),
            events: broadcast::channel(64).0,
            metrics,
        }
    }

    /// The upstream this breaker guards.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The breaker's settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// State changes from now on. A slow subscriber misses old events (`Lagged`), never blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    /// The current state (an expired open period reads as half-open).
    pub fn state(&self) -> State {
        let inner = self.lock();
        match inner.phase {
            Phase::Closed => State::Closed,
            Phase::Open { until } if Instant::now() < until => State::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Admits a call or refuses it with [`Error::CircuitOpen`].
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Error> {
        let mut inner = self.lock();
        if let Phase::Open { until } = inner.phase {
            if Instant::now() < until {
                return Err(self.refuse());
            }
            self.transition(
                &mut inner,
                Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
            );
        }
        if let Phase::HalfOpen {
            in_flight,
            successes,
        } = &mut inner.phase
        {
            if *in_flight + *successes >= self.config.half_open_probes {
                return Err(self.refuse());
            }
            *in_flight += 1;
        }
        Ok(Permit {
            breaker: self.clone(),
            generation: inner.generation,
            recorded: false,
        })
    }

    fn refuse(&self) -> Error {
        if let Some(m) = &self.metrics {
            m.rejected(&self.upstream, "circuit_open");
        }
        Error::CircuitOpen {
            upstream: self.upstream.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few counters, always left consistent: a panic elsewhere cannot
        // leave it half-updated, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_outcome(&self, generation: u64, outcome: Option<(bool, bool)>) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        match (&mut inner.phase, outcome) {
            (Phase::HalfOpen { in_flight, .. }, None) => *in_flight = in_flight.saturating_sub(1),
            (Phase::HalfOpen { .. }, Some((true, _))) => self.open(&mut inner),
            (
                Phase::HalfOpen {
                    in_flight,
                    successes,
                },
                Some((false, _)),
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= self.config.half_open_probes {
                    inner.reopenings = 0;
                    self.transition(&mut inner, Phase::Closed);
                }
            }
            (Phase::Closed, Some((failure, slow))) => self.judge_closed(&mut inner, failure, slow),
            _ => {}
        }
    }

    fn judge_closed(&self, inner: &mut Inner, failure: bool, slow: bool) {
        inner.consecutive = if failure { inner.consecutive + 1 } else { 0 };
        inner.window.record(failure, slow);
        let c = &self.config;
        let t = inner.window.totals();
        let rate = |n: u32| f64::from(n) / f64::from(t.calls.max(1));
        let judged = t.calls >= c.minimum_calls.max(1);
        let trip = c
            .consecutive_failures
            .is_some_and(|n| inner.consecutive >= n)
            || (judged && c.failure_rate.is_some_and(|r| rate(t.failures) >= r))
            || (judged && c.slow_call_rate.is_some_and(|r| rate(t.slow) >= r));
        if trip {
            self.open(inner);
        }
    }

    fn open(&self, inner: &mut Inner) {
        let c = &self.config;
        let factor = c
            .open_multiplier
            .max(1.0)
            .powi(inner.reopenings.min(64) as i32);
        let open_for = c
            .open_duration
            .mul_f64(factor.min(1e9))
            .min(c.max_open_duration);
        inner.reopenings += 1;
        self.transition(
            inner,
            Phase::Open {
                until: Instant::now() + open_for,
            },
        );
    }

    fn transition(&self, inner: &mut Inner, to: Phase) {
        let from = phase_state(&inner.phase);
        inner.phase = to;
        inner.generation += 1;
        if matches!(inner.phase, Phase::Closed) {
            inner.consecutive = 0;
            inner.window = Window::new(self.config.window);
        }
        let to = phase_state(&inner.phase);
        tracing::info!(upstream = %self.upstream, from = from.as_str(), to = to.as_str(), "circuit breaker transition");
        if let Some(m) = &self.metrics {
            m.breaker_transition(&self.upstream, from, to);
        }
        // No subscriber is not an error: events are for whoever listens.
        let _ = self.events.send(Transition {
            upstream: self.upstream.clone(),
            from,
            to,
        });
    }
}

fn phase_state(phase: &Phase) -> State {
    match phase {
        Phase::Closed => State::Closed,
        Phase::Open { .. } => State::Open,
        Phase::HalfOpen { .. } => State::HalfOpen,
    }
}

impl Permit {
    /// Reports the call's outcome: whether it failed and whether it was slow.
    pub fn record(mut self, failure: bool, slow: bool) {
        self.recorded = true;
        self.breaker
            .on_outcome(self.generation, Some((failure, slow)));
    }

    /// Reports a call that says nothing about the upstream's health (refused locally).
    pub fn release(self) {}
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.on_outcome(self.generation, None);
        }
    }
}

#[cfg(test)]
mod tests;
