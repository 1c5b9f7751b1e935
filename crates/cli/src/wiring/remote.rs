//! Discovery for the roles that run without a registry of their own: the registry client's
//! local cache, fed by blocking queries (watch) to the registry at `[discovery] registry_url`.
//!
//! It remembers every service it was asked to follow, so readiness can wait for the
//! registry's first answer about each: a gateway that took traffic before then would answer
//! 503 for services that have healthy instances.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use flotilla::registry::{ClientOptions, RegistryClient};
use flotilla_core::ServiceName;
use flotilla_discovery::{Discovery, ServiceSet, StaticDiscovery};
use tokio::sync::watch;

use crate::platform::DiscoveryConfig;

/// Each followed service's cached set, by name.
type Followed = Arc<Mutex<BTreeMap<ServiceName, watch::Receiver<ServiceSet>>>>;

/// A discovery source that knows which of its followed services it has heard about.
#[derive(Debug, Clone)]
pub(crate) struct RemoteDiscovery {
    source: Arc<dyn Discovery>,
    /// `None` without a registry: nothing is remote, so nothing is awaited.
    followed: Option<Followed>,
}

impl RemoteDiscovery {
    /// Follows the registry `config` names; without one, a source that knows no service
    /// (static upstreams still resolve: they never ask discovery). Must run inside the runtime
    /// the followers are to run on.
    pub(crate) fn connect(config: &DiscoveryConfig, token: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = &config.registry_url else {
            return Ok(Self {
                source: Arc::new(StaticDiscovery::new()),
                followed: None,
            });
        };
        let mut options = ClientOptions::new(url.clone());
        options.token = token.map(str::to_owned);
        let client = RegistryClient::new(options)
            .with_context(|| format!("invalid discovery.registry_url {url:?}"))?;
        Ok(Self {
            source: Arc::new(client),
            followed: Some(Arc::default()),
        })
    }

    /// Followed services the registry has not answered about yet, by name.
    pub(crate) fn awaited(&self) -> Vec<String> {
        let Some(followed) = &self.followed else {
            return Vec::new();
        };
        let followed = followed.lock().unwrap_or_else(|p| p.into_inner());
        followed
            .iter()
            .filter(|(_, rx)| !rx.borrow().is_known())
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The readiness check of a role resolving through this source: critical while a
    /// followed service has had no first answer.
    pub(crate) fn readiness(&self) -> flotilla::HealthCheck {
        let discovery = self.clone();
        flotilla::HealthCheck::new("discovery", move || {
            let awaited = discovery.awaited();
            async move {
                match awaited.is_empty() {
                    true => flotilla::CheckResult::passing(),
                    false => flotilla::CheckResult::critical(serde_json::json!({
                        "waiting_for_registry": awaited,
                    })),
                }
            }
        })
    }
}

impl Discovery for RemoteDiscovery {
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet> {
        let rx = self.source.watch(service);
        if let Some(followed) = &self.followed {
            let mut followed = followed.lock().unwrap_or_else(|p| p.into_inner());
            followed
                .entry(service.clone())
                .or_insert_with(|| rx.clone());
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_registry_nothing_is_awaited() {
        let discovery = RemoteDiscovery::connect(&DiscoveryConfig::default(), None).unwrap();
        let users = ServiceName::new("users").unwrap();
        assert!(!discovery.watch(&users).borrow().is_known());
        assert!(discovery.awaited().is_empty());
    }

    #[tokio::test]
    async fn a_followed_service_is_awaited_until_the_registry_answers() {
        // Nothing listens on port 9: the follower retries and the service stays awaited.
        let config = DiscoveryConfig {
            registry_url: Some("http://127.0.0.1:9".into()),
        };
        let discovery = RemoteDiscovery::connect(&config, None).unwrap();
        assert!(discovery.awaited().is_empty(), "nothing followed yet");
        let users = ServiceName::new("users").unwrap();
        discovery.watch(&users);
        discovery.watch(&users);
        assert_eq!(discovery.awaited(), ["users"]);
    }
}
