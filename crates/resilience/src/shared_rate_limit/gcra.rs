//! The GCRA arithmetic, in whole microseconds. Every [`SharedRateLimiter`](super::SharedRateLimiter)
//! follows it; `flotilla-redis` runs the same steps in a Lua script, and the conformance suite
//! checks the two agree.
//!
//! State per key is one number, the theoretical arrival time (TAT): when the key would be back
//! to a full burst if no other request came. A request at `now` is admitted when, after adding
//! its cost (`emission_interval`), the TAT is at most `burst` costs ahead of `now`.

use std::time::Duration;

use super::{Decision, Quota};

/// The outcome of one step: the decision, and the TAT to store (`None` when refused: the state
/// is left as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// What to answer.
    pub decision: Decision,
    /// The new TAT in microseconds, to keep until `now + decision.reset_after`.
    pub new_tat: Option<u64>,
}

/// One request at `now_us` against a key whose stored TAT is `tat_us` (`None` for a new or
/// expired key).
pub fn step(tat_us: Option<u64>, now_us: u64, quota: &Quota) -> Step {
    let interval = micros(quota.emission_interval());
    let capacity = interval.saturating_mul(u64::from(quota.burst()));
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat.saturating_add(interval);
    let allow_at = new_tat.saturating_sub(capacity);
    if now_us < allow_at {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            retry_after: Duration::from_micros(allow_at - now_us),
            reset_after: Duration::from_micros(tat - now_us),
        };
        return Step {
            decision,
            new_tat: None,
        };
    }
    let ahead = new_tat - now_us;
    let remaining = (capacity - ahead) / interval;
    let decision = Decision {
        allowed: true,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        retry_after: Duration::ZERO,
        reset_after: Duration::from_micros(ahead),
    };
    Step {
        decision,
        new_tat: Some(new_tat),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(requests: u32, window_secs: u64, burst: u32) -> Quota {
        Quota::per_window(requests, Duration::from_secs(window_secs), burst).unwrap()
    }

    /// Runs `n` requests at `now`, threading the TAT, and returns the decisions.
    fn run(n: usize, now: u64, tat: &mut Option<u64>, q: &Quota) -> Vec<Decision> {
        (0..n)
            .map(|_| {
                let s = step(*tat, now, q);
                if s.new_tat.is_some() {
                    *tat = s.new_tat;
                }
                s.decision
            })
            .collect()
    }

    #[test]
    fn a_full_burst_is_admitted_at_once_then_the_next_is_refused_for_one_interval() {
        let q = quota(3, 3, 3); // one per second, bursts of 3
        let mut tat = None;
        let d = run(4, 1_000_000, &mut tat, &q);
        let remaining: Vec<u32> = d.iter().map(|d| d.remaining).collect();
        assert_eq!(remaining, [2, 1, 0, 0]);
        assert!(d[..3].iter().all(|d| d.allowed));
        assert!(!d[3].allowed);
        assert_eq!(d[3].retry_after, Duration::from_secs(1));
        assert_eq!(d[3].reset_after, Duration::from_secs(3));
        assert_eq!(tat, Some(4_000_000), "a refusal leaves the state alone");
    }

    #[test]
    fn time_refills_one_request_per_interval() {
        let q = quota(60, 60, 2);
        let mut tat = None;
        assert!(run(2, 0, &mut tat, &q).iter().all(|d| d.allowed));
        assert!(!run(1, 999_999, &mut tat, &q)[0].allowed);
        let d = run(2, 1_000_000, &mut tat, &q);
        assert!(d[0].allowed && !d[1].allowed);
    }

    #[test]
    fn an_idle_key_is_back_to_a_full_burst_after_reset_after() {
        let q = quota(10, 10, 5);
        let mut tat = None;
        let last = *run(5, 0, &mut tat, &q).last().unwrap();
        assert_eq!(last.reset_after, Duration::from_secs(5));
        let later = run(6, 5_000_000, &mut tat, &q);
        assert_eq!(later.iter().filter(|d| d.allowed).count(), 5);
        assert_eq!(later[0].remaining, 4);
    }

    #[test]
    fn a_per_day_quota_refuses_for_most_of_a_day() {
        let q = quota(2, 86_400, 2);
        let mut tat = None;
        let d = run(3, 7, &mut tat, &q);
        assert_eq!(d[2].retry_after, Duration::from_secs(43_200));
    }

    #[test]
    fn a_tat_from_the_past_counts_as_a_full_burst() {
        let q = quota(1, 1, 1);
        let s = step(Some(10), 5_000_000, &q);
        assert!(s.decision.allowed);
        assert_eq!(s.new_tat, Some(6_000_000));
    }

    #[test]
    fn quotas_too_fine_to_count_or_empty_are_refused() {
        assert!(Quota::per_window(0, Duration::from_secs(1), 1).is_err());
        assert!(Quota::per_window(1, Duration::from_secs(1), 0).is_err());
        assert!(Quota::per_window(2_000_000, Duration::from_secs(1), 1).is_err());
    }
}
