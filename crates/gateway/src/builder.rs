//! [`GatewayBuilder`]: builds a [`Gateway`] with what a configuration file cannot carry.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{Clock, SystemClock};
use flotilla_discovery::Discovery;
use flotilla_resilience::shared_rate_limit::SharedRateLimiter;

use crate::ratelimit::SharedLimits;
use crate::{Error, Gateway, GatewayOptions};

/// Start with [`Gateway::builder`].
#[derive(Debug)]
pub struct GatewayBuilder {
    opts: GatewayOptions,
    discovery: Arc<dyn Discovery>,
    clock: Arc<dyn Clock>,
    shared: Option<(Arc<dyn SharedRateLimiter>, Duration)>,
}

impl GatewayBuilder {
    pub(crate) fn new(opts: GatewayOptions, discovery: Arc<dyn Discovery>) -> Self {
        Self {
            opts,
            discovery,
            clock: Arc::new(SystemClock),
            shared: None,
        }
    }

    /// The wall clock the response cache reads (ages, expiry); default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The limiter that routes with `rate_limit.shared = true` count against, shared with the
    /// other replicas that use the same store; each call waits at most `timeout` (then the
    /// route's `on_shared_failure` policy applies). Without one, such routes are refused at
    /// build and reload.
    pub fn shared_rate_limiter(
        mut self,
        limiter: Arc<dyn SharedRateLimiter>,
        timeout: Duration,
    ) -> Self {
        self.shared = Some((limiter, timeout));
        self
    }

    /// Validates everything and builds the gateway; the error names the first bad key.
    pub fn build(self) -> Result<Gateway, Error> {
        let limits = match self.shared {
            Some((limiter, timeout)) => Some(Arc::new(SharedLimits::new(limiter, timeout)?)),
            None => None,
        };
        Gateway::build(self.opts, self.discovery, self.clock, limits)
    }
}
