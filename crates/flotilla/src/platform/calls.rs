//! Readiness for the services this one calls (`platform.calls`): not ready until discovery
//! has answered for each of them, so the first request a ready service takes does not meet an
//! empty discovery cache. The wait is bounded: a registry that is down must not keep a
//! service out of traffic for ever (it may serve what needs no other service), so past
//! `platform.discovery_wait` the check turns to a warning — ready — and says so once in the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_core::ServiceName;
use flotilla_discovery::{Discovery, ServiceSet};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::health::{CheckResult, HealthCheck};

/// Whether discovery has answered for every called service yet.
#[derive(Debug)]
pub(super) struct DiscoveryWait {
    sets: Vec<(ServiceName, watch::Receiver<ServiceSet>)>,
    deadline: Instant,
    bound: Duration,
    warned: AtomicBool,
}

impl DiscoveryWait {
    /// Starts watching `services` now (which starts the cache's fetches), waiting up to `bound`.
    pub(super) fn new(
        discovery: &dyn Discovery,
        services: &[ServiceName],
        bound: Duration,
    ) -> Self {
        Self {
            sets: services
                .iter()
                .map(|s| (s.clone(), discovery.watch(s)))
                .collect(),
            deadline: Instant::now() + bound,
            bound,
            warned: AtomicBool::new(false),
        }
    }

    /// Passing once every set is known; critical before that, until the bound; then a warning.
    pub(super) fn verdict(&self) -> CheckResult {
        let unknown: Vec<&str> = self
            .sets
            .iter()
            .filter(|(_, rx)| !rx.borrow().is_known())
            .map(|(name, _)| name.as_str())
            .collect();
        if unknown.is_empty() {
            return CheckResult::passing();
        }
        let details = serde_json::json!({ "discovery_has_not_answered_for": unknown });
        if Instant::now() < self.deadline {
            return CheckResult::critical(details);
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                services = ?unknown, wait = ?self.bound,
                "discovery has not answered for services this one calls; reporting ready without them (is the registry up?)"
            );
        }
        CheckResult::warning(details)
    }

    /// The readiness check named `discovery`.
    pub(super) fn check(self) -> HealthCheck {
        let this = Arc::new(self);
        HealthCheck::new("discovery", move || {
            let this = Arc::clone(&this);
            async move { this.verdict() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CheckStatus;
    use flotilla_discovery::StaticDiscovery;

    fn name(s: &str) -> ServiceName {
        ServiceName::new(s).expect("valid name")
    }

    #[tokio::test(start_paused = true)]
    async fn not_ready_until_discovery_answered_for_every_called_service() {
        let d = StaticDiscovery::new();
        let wait = DiscoveryWait::new(&d, &[name("users"), name("stock")], Duration::from_secs(10));
        assert_eq!(wait.verdict().status, CheckStatus::Critical);
        d.set_passing(&name("users"), vec![]);
        let v = wait.verdict();
        assert_eq!(v.status, CheckStatus::Critical, "stock still unknown");
        assert_eq!(
            v.details["discovery_has_not_answered_for"],
            serde_json::json!(["stock"])
        );
        d.set_passing(&name("stock"), vec![]); // known, even with no instance
        assert_eq!(wait.verdict().status, CheckStatus::Passing);
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_answer_it_turns_ready_with_a_warning_after_the_bound() {
        let d = StaticDiscovery::new();
        let wait = DiscoveryWait::new(&d, &[name("users")], Duration::from_secs(10));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(wait.verdict().status, CheckStatus::Critical);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(wait.verdict().status, CheckStatus::Warning);
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::Validate;
    use crate::platform::PlatformConfig;

    #[test]
    fn a_called_service_with_a_bad_name_names_its_key() {
        let mut c = PlatformConfig::new("http://127.0.0.1:1");
        c.calls = vec!["users".into(), "not a name!".into()];
        let e = c.validate().expect_err("a bad name");
        assert_eq!(e.key, "calls[1]");
        c.calls.pop();
        c.discovery_wait = Some(std::time::Duration::from_secs(601));
        assert_eq!(c.validate().expect_err("too long").key, "discovery_wait");
    }
}
