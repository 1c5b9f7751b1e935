//! Rolling windows of call outcomes, by count (the last N calls) or by time (the last T,
//! in ten buckets so memory stays constant however many calls arrive).

use std::time::Duration;

use tokio::time::Instant;

/// Which calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last duration.
    Time(Duration),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Totals {
    fn add(&mut self, failure: bool, slow: bool, sign: i8) {
        let apply = |v: &mut u32, on: bool| {
            if on {
                *v = if sign > 0 {
                    v.saturating_add(1)
                } else {
                    v.saturating_sub(1)
                };
            }
        };
        apply(&mut self.calls, true);
        apply(&mut self.failures, failure);
        apply(&mut self.slow, slow);
    }
}

const BUCKETS: u32 = 10;

#[derive(Debug)]
pub(crate) enum Window {
    Count {
        ring: Vec<u8>,
        next: usize,
        filled: bool,
        totals: Totals,
    },
    Time {
        span: Duration,
        start: Instant,
        buckets: Vec<(u64, Totals)>,
    },
}

impl Window {
    pub(crate) fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Count(n) => Self::Count {
                ring: vec![0; n.max(1) as usize],
                next: 0,
                filled: false,
                totals: Totals::default(),
            },
            WindowKind::Time(span) => Self::Time {
                span: span.max(Duration::from_millis(BUCKETS as u64)),
                start: Instant::now(),
                buckets: vec![(u64::MAX, Totals::default()); BUCKETS as usize],
            },
        }
    }

    pub(crate) fn record(&mut self, failure: bool, slow: bool) {
        match self {
            Self::Count {
                ring,
                next,
                filled,
                totals,
            } => {
                let old = ring[*next];
                if *filled {
                    totals.add(old & 1 == 1, old & 2 == 2, -1);
                }
                ring[*next] = u8::from(failure) | (u8::from(slow) << 1);
                totals.add(failure, slow, 1);
                *next = (*next + 1) % ring.len();
                *filled |= *next == 0;
            }
            Self::Time {
                span,
                start,
                buckets,
            } => {
                let epoch = epoch(*start, *span);
                let slot = &mut buckets[(epoch % BUCKETS as u64) as usize];
                if slot.0 != epoch {
                    *slot = (epoch, Totals::default());
                }
                slot.1.add(failure, slow, 1);
            }
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        match self {
            Self::Count { totals, .. } => *totals,
            Self::Time {
                span,
                start,
                buckets,
            } => {
                let now = epoch(*start, *span);
                let oldest = now.saturating_sub(BUCKETS as u64 - 1);
                let mut sum = Totals::default();
                for (_, t) in buckets
                    .iter()
                    .filter(|(e, _)| *e != u64::MAX && *e >= oldest && *e <= now)
                {
                    sum.calls += t.calls;
                    sum.failures += t.failures;
                    sum.slow += t.slow;
                }
                sum
            }
        }
    }
}

fn epoch(start: Instant, span: Duration) -> u64 {
    let bucket = span / BUCKETS;
    (Instant::now().saturating_duration_since(start).as_nanos() / bucket.as_nanos().max(1)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let mut w = Window::new(WindowKind::Count(3));
        w.record(true, false);
        w.record(false, true);
        w.record(false, false);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn time_window_forgets_calls_older_than_its_span() {
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)));
        w.record(true, false);
        tokio::time::advance(Duration::from_secs(5)).await;
        w.record(true, false);
        assert_eq!(w.totals().failures, 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(w.totals().failures, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.totals(), Totals::default());
    }
}
