//! One setting connects a service to a running Flotilla control plane (`flotilla up`):
//! self-registration, discovery for its [`ServiceClient`](crate::client::ServiceClient), the
//! event bus and the event store, all over the control plane's HTTP API.
//!
//! ```no_run
//! use flotilla::Microservice;
//! use flotilla::platform::Platform;
//!
//! # async fn run() -> Result<(), flotilla::Error> {
//! // `[platform] url = "http://127.0.0.1:4400"` in flotilla.toml, or FLOTILLA_PLATFORM__URL.
//! let platform = Platform::load(None).await?;
//! let store = platform.event_store(); // aggregates and projections
//! let bus = platform.bus();           // publish
//! Microservice::builder("orders")?
//!     .platform(&platform) // registers, and event handlers subscribe through it
//!     .build()?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! The bus and the store are backends of the same contracts as a linked engine and pass the
//! same conformance suites, so moving a service to its own NATS or PostgreSQL later is a
//! configuration change in the service, not a code change.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_bus::Bus;
use flotilla_discovery::Discovery;
use flotilla_eventstore::EventStore;
use flotilla_platform::ControlPlane;
use flotilla_registry_client::{ClientOptions, RegistryClient};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::{ConfigError, Validate};
use crate::health::{CheckResult, HealthCheck};
use crate::registration::SelfRegistration;
use crate::service::MicroserviceBuilder;

mod calls;

/// The `[platform]` table of a service's configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// The control plane's URL, e.g. `http://127.0.0.1:4400` (`FLOTILLA_PLATFORM__URL`).
    pub url: Option<String>,
    /// The control plane's `registry.token`, needed for writes when it sets one
    /// (`FLOTILLA_PLATFORM__TOKEN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Register with the platform's registry on start. Default true.
    pub register: Option<bool>,
    /// The address other services should call (default: the listener's address).
    pub address: Option<String>,
    /// Tags of this instance in the registry.
    pub tags: Vec<String>,
    /// Deadline of one call to the control plane. Default `10s`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The services this one calls: it reports ready only once discovery has answered for
    /// each (or after `discovery_wait`), so its first requests find their instances.
    pub calls: Vec<String>,
    /// The longest readiness waits for discovery's first answers about `calls`; past it the
    /// service is ready anyway, with a warning logged. Default `10s`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub discovery_wait: Option<Duration>,
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("register", &self.register)
            .field("address", &self.address)
            .field("tags", &self.tags)
            .field("timeout", &self.timeout)
            .field("calls", &self.calls)
            .field("discovery_wait", &self.discovery_wait)
            .finish()
    }
}

impl Validate for PlatformConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.url.as_deref() {
            None => Err(ConfigError::invalid(
                "url",
                "is not set: the control plane's URL, e.g. http://127.0.0.1:4400",
            )),
            Some(url) if !url.starts_with("http://") => Err(ConfigError::invalid(
                "url",
                format!("{url:?} must be http://host:port"),
            )),
            Some(_) if self.token.as_deref().is_some_and(str::is_empty) => Err(
                ConfigError::invalid("token", "must not be empty (leave it unset)"),
            ),
            Some(_) if self.timeout.is_some_and(|t| t.is_zero()) => {
                Err(ConfigError::invalid("timeout", "must be longer than 0s"))
            }
            Some(_) => self.validate_calls(),
        }
    }
}

impl PlatformConfig {
    fn validate_calls(&self) -> Result<(), ConfigError> {
        for (i, service) in self.calls.iter().enumerate() {
            if let Err(e) = flotilla_core::ServiceName::new(service.clone()) {
                return Err(ConfigError::invalid(format!("calls[{i}]"), e.to_string()));
            }
        }
        match self.discovery_wait {
            Some(w) if w > MAX_DISCOVERY_WAIT => Err(ConfigError::invalid(
                "discovery_wait",
                format!("{w:?} is over the limit of {MAX_DISCOVERY_WAIT:?}"),
            )),
            _ => Ok(()),
        }
    }

    /// Loads the `[platform]` table from `file` (if any) and `FLOTILLA_PLATFORM__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        crate::config::load(file, Some("platform"))
    }

    /// A configuration for the control plane at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// The longest `discovery_wait`: readiness must not hang on a registry for longer.
const MAX_DISCOVERY_WAIT: Duration = Duration::from_secs(600);

/// A connection to a control plane: its registry, bus and event store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Platform {
    config: PlatformConfig,
    control_plane: ControlPlane,
    registry: RegistryClient,
    bus: Bus,
    store: Arc<dyn EventStore>,
    reached: Arc<AtomicBool>,
}

impl Platform {
    /// Loads [`PlatformConfig`] (file, then `FLOTILLA_PLATFORM__*`) and connects.
    pub async fn load(file: Option<&Path>) -> Result<Self, Error> {
        Self::connect(PlatformConfig::load(file)?).await
    }

    /// Connects to the control plane `config` names. Never waits for it: a control plane that
    /// is down now is reached when it comes up (calls until then fail as unavailable).
    pub async fn connect(config: PlatformConfig) -> Result<Self, Error> {
        let prefixed = |e: ConfigError| ConfigError {
            key: format!("platform.{}", e.key),
            ..e
        };
        config.validate().map_err(prefixed)?;
        let url = config.url.clone().unwrap_or_default();
        let mut options = flotilla_platform::ConnectOptions::new(url.clone());
        options.token = config.token.clone();
        if let Some(timeout) = config.timeout {
            options.timeout = timeout;
        }
        let control_plane = ControlPlane::new(options).map_err(setup)?;
        let mut registry = ClientOptions::new(url);
        registry.token = config.token.clone();
        let registry = RegistryClient::new(registry).map_err(setup)?;
        let bus = Bus::new(Arc::new(flotilla_platform::bus::PlatformBus::new(
            control_plane.clone(),
        )));
        let store =
            flotilla_platform::eventstore::PlatformEventStore::connect(control_plane.clone())
                .await
                .map_err(setup)?;
        Ok(Self {
            config,
            control_plane,
            registry,
            bus,
            store: Arc::new(store),
            reached: Arc::default(),
        })
    }

    /// The platform's event bus.
    pub fn bus(&self) -> Bus {
        self.bus.clone()
    }

    /// The platform's event store, for repositories and projections.
    pub fn event_store(&self) -> Arc<dyn EventStore> {
        Arc::clone(&self.store)
    }

    /// The platform registry's discovery, fed by its watch stream, for a `ServiceClient`.
    pub fn discovery(&self) -> Arc<dyn Discovery> {
        Arc::new(self.registry.clone())
    }

    /// A [`ServiceClient`](crate::client::ServiceClient) that finds services through the
    /// platform's registry, with the default resilience policy.
    pub fn client(&self) -> crate::client::ServiceClient {
        crate::client::ServiceClient::new(self.discovery())
    }

    /// The control plane's URL.
    pub fn url(&self) -> &str {
        self.control_plane.url()
    }

    /// Critical until the control plane has answered once; a warning (still ready) when it
    /// stops answering later, since the service can go on serving what does not need it.
    fn readiness(&self) -> HealthCheck {
        let (control_plane, reached) = (self.control_plane.clone(), Arc::clone(&self.reached));
        HealthCheck::new("platform", move || {
            let (control_plane, reached) = (control_plane.clone(), Arc::clone(&reached));
            async move {
                match control_plane.ping().await {
                    Ok(()) => {
                        reached.store(true, Ordering::Relaxed);
                        CheckResult::passing()
                    }
                    Err(e) => {
                        let details = serde_json::json!({ "error": e.to_string() });
                        match reached.load(Ordering::Relaxed) {
                            true => CheckResult::warning(details),
                            false => CheckResult::critical(details),
                        }
                    }
                }
            }
        })
    }
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

impl MicroserviceBuilder {
    /// Plugs the service into `platform`: registers it with the platform's registry (unless
    /// `platform.register = false`), subscribes its event handlers through the platform's bus,
    /// and adds a `platform` readiness check (critical until the control plane first answers)
    /// and, with `platform.calls`, a `discovery` one (critical until discovery has answered
    /// for each called service, at most `platform.discovery_wait`).
    pub fn platform(self, platform: &Platform) -> Self {
        let mut builder = self
            .events(platform.bus())
            .readiness_check(platform.readiness());
        let calls: Vec<_> = platform
            .config
            .calls
            .iter()
            .filter_map(|s| flotilla_core::ServiceName::new(s.clone()).ok())
            .collect();
        if !calls.is_empty() {
            let bound = platform
                .config
                .discovery_wait
                .unwrap_or(Duration::from_secs(10));
            let wait = calls::DiscoveryWait::new(&platform.registry, &calls, bound);
            builder = builder.readiness_check(wait.check());
        }
        if platform.config.register.unwrap_or(true) {
            let mut registration = SelfRegistration::new(platform.url());
            registration.token = platform.config.token.clone();
            registration.address = platform.config.address.clone();
            registration.tags = platform.config.tags.clone();
            builder = builder.register_with(registration);
        }
        builder
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_url_comes_from_one_environment_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_PLATFORM__URL", "http://127.0.0.1:4400");
            jail.set_env("FLOTILLA_URL", "http://ignored:1"); // the CLI's own variable
            let config = PlatformConfig::load(None).expect("loads");
            assert_eq!(config.url.as_deref(), Some("http://127.0.0.1:4400"));
            Ok(())
        });
    }

    #[test]
    fn a_missing_or_bad_url_names_the_key() {
        figment::Jail::expect_with(|jail| {
            let err = PlatformConfig::load(None).expect_err("no url");
            assert_eq!(err.key, "platform.url");
            jail.set_env("FLOTILLA_PLATFORM__URL", "ftp://x");
            let err = PlatformConfig::load(None).expect_err("bad url");
            assert!(err.to_string().contains("ftp://x"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_token_is_not_printed() {
        let mut config = PlatformConfig::new("http://127.0.0.1:1");
        config.token = Some("s3cret".into());
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
