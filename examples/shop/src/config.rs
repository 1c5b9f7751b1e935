//! The `[shop]` table: the knobs that make failures visible (`FLOTILLA_SHOP__*`).

use std::path::Path;
use std::time::Duration;

use flotilla::config::{ConfigError, Validate};
use serde::{Deserialize, Serialize};

/// The shop's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopConfig {
    /// Share of charges the payment provider declines, 0.0 to 1.0
    /// (`FLOTILLA_SHOP__PAYMENT_FAILURE_RATE`). Default 0.
    pub payment_failure_rate: f64,
    /// How long the payment provider takes to answer a charge
    /// (`FLOTILLA_SHOP__PAYMENT_LATENCY`). Default `0s`.
    #[serde(with = "humantime_serde")]
    pub payment_latency: Duration,
    /// The pretend card's limit in cents: a charge above it is always declined, so a failed
    /// payment can be shown on purpose (`FLOTILLA_SHOP__PAYMENT_CARD_LIMIT`). Default
    /// 100000 (1,000.00).
    pub payment_card_limit: u64,
    /// `max-age` of product reads, which the gateway's cache honours. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub product_max_age: Duration,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            payment_failure_rate: 0.0,
            payment_latency: Duration::ZERO,
            payment_card_limit: 100_000,
            product_max_age: Duration::from_secs(5),
        }
    }
}

impl Validate for ShopConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.payment_failure_rate) {
            let msg = format!("{} must be between 0 and 1", self.payment_failure_rate);
            return Err(ConfigError::invalid("payment_failure_rate", msg));
        }
        if self.payment_latency > Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "payment_latency",
                "must be at most 60s",
            ));
        }
        Ok(())
    }
}

impl ShopConfig {
    /// Loads `[shop]` from `file` (if any) and `FLOTILLA_SHOP__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        flotilla::config::load(file, Some("shop"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_rate_outside_zero_to_one_is_refused_naming_the_key() {
        let config = ShopConfig {
            payment_failure_rate: 1.5,
            ..ShopConfig::default()
        };
        let err = config.validate().expect_err("refused");
        assert_eq!(err.key, "payment_failure_rate");
    }
}
