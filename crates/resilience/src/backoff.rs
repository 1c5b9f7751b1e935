//! Exponential backoff with full jitter (the "Full Jitter" scheme: a delay drawn uniformly from
//! zero to the capped exponential), which spreads retrying clients apart instead of letting them
//! retry in lock-step.

use std::time::Duration;

use rand::Rng;

/// Backoff settings: the `n`-th retry waits a random time in `[0, min(cap, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest delay ever drawn.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The upper bound of the delay before retry number `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(63);
        let factor = 1u64 << exp;
        let nanos = (self.base.as_nanos() as u64).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.cap)
    }

    /// A jittered delay for retry number `retry`, drawn with `rng`.
    pub fn delay_with(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry).as_nanos() as u64;
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }

    /// A jittered delay for retry number `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, &mut rand::rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn jittered_delays_stay_within_the_capped_exponential(
            base_ms in 0u64..10_000,
            cap_ms in 0u64..600_000,
            retry in 0u32..200,
            seed in any::<u64>(),
        ) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms) };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay_with(retry, &mut rng);
            let bound = Duration::from_millis(base_ms)
                .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
                .min(Duration::from_millis(cap_ms));
            prop_assert!(d <= bound, "{d:?} > {bound:?}");
            prop_assert!(d <= b.cap);
        }
    }

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(70),
        };
        let c: Vec<_> = (1..=5).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(c, vec![10, 20, 40, 70, 70]);
    }

    #[test]
    fn delays_are_spread_not_constant() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(1),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let draws: std::collections::HashSet<_> =
            (0..50).map(|_| b.delay_with(1, &mut rng)).collect();
        assert!(draws.len() > 40);
    }
}
