//! Delivery policy: how many times, how long apart, and when to give up.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Delay before the next delivery after a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Backoff {
    /// `initial * multiplier^(attempt-1)`, capped at `max`; with `jitter`, a uniformly random
    /// delay between zero and that value ("full jitter"), which spreads retries of many
    /// failing events instead of having them return together.
    Exponential {
        /// Delay after the first failure.
        #[serde(with = "millis")]
        initial: Duration,
        /// Upper bound.
        #[serde(with = "millis")]
        max: Duration,
        /// Growth per attempt (at least 1).
        multiplier: f64,
        /// Full jitter.
        jitter: bool,
    },
    /// The n-th failure waits the n-th delay; failures past the end reuse the last one.
    List {
        /// The delays, in order; must not be empty.
        #[serde(with = "millis_list")]
        delays: Vec<Duration>,
    },
}

impl Default for Backoff {
    /// Exponential from 1 s, doubling, capped at 5 minutes, with full jitter.
    fn default() -> Self {
        Self::Exponential {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        match self {
            Self::List { delays } => {
                let i = (attempt.max(1) as usize - 1).min(delays.len().saturating_sub(1));
                delays.get(i).copied().unwrap_or_default()
            }
            Self::Exponential {
                initial,
                max,
                multiplier,
                jitter,
            } => {
                let exp = i32::try_from(attempt.max(1) - 1).unwrap_or(i32::MAX);
                let secs = initial.as_secs_f64() * multiplier.max(1.0).powi(exp);
                let capped = secs.min(max.as_secs_f64());
                let secs = if *jitter {
                    rand::rng().random_range(0.0..=capped)
                } else {
                    capped
                };
                Duration::from_secs_f64(secs)
            }
        }
    }

    fn validate(&self) -> Result<(), Error> {
        match self {
            Self::List { delays } if delays.is_empty() => Err(Error::InvalidInput(
                "backoff list must name at least one delay".into(),
            )),
            Self::Exponential { multiplier, .. }
                if !multiplier.is_finite() || *multiplier < 1.0 =>
            {
                Err(Error::InvalidInput(format!(
                    "backoff multiplier {multiplier} must be a finite number >= 1"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Max deliveries and backoff: the same on every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryPolicy {
    /// Deliveries before an event is dead-lettered (at least 1). Default 5.
    pub max_deliveries: u32,
    /// Delay between deliveries of a failing event.
    pub backoff: Backoff,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_deliveries: 5,
            backoff: Backoff::default(),
        }
    }
}

impl DeliveryPolicy {
    /// Refuses a policy that cannot work, naming the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_deliveries == 0 {
            return Err(Error::InvalidInput(
                "max_deliveries 0 must be at least 1".into(),
            ));
        }
        self.backoff.validate()
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod millis_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            d.iter()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_backoff_reuses_the_last_delay_past_the_end() {
        let b = Backoff::List {
            delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
        };
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(5));
        assert_eq!(b.delay(9), Duration::from_secs(5));
    }

    #[test]
    fn exponential_backoff_without_jitter_doubles_then_caps() {
        let b = Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: false,
        };
        let got: Vec<u128> = (1..=5).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn invalid_policies_are_refused_naming_the_value() {
        let p = DeliveryPolicy {
            max_deliveries: 0,
            ..DeliveryPolicy::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("max_deliveries 0")
        );
        let b = Backoff::List { delays: vec![] };
        assert!(b.validate().is_err());
    }

    proptest! {
        #[test]
        fn jittered_backoff_stays_within_zero_and_the_cap(attempt in 1u32..200, ms in 1u64..10_000) {
            let b = Backoff::Exponential {
                initial: Duration::from_millis(ms),
                max: Duration::from_millis(ms * 8),
                multiplier: 3.0,
                jitter: true,
            };
            prop_assert!(b.delay(attempt) <= Duration::from_millis(ms * 8));
        }
    }
}
