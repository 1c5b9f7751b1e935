//! The platform's configuration file, `flotilla.toml`: one table per part.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flotilla::ServiceConfig;
use flotilla::config::{ConfigError, Validate};
use serde::{Deserialize, Serialize};

/// Where the embedded storage keeps its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// Directory of the embedded databases. Default `./flotilla-data`.
    pub(crate) data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flotilla-data"),
        }
    }
}

/// Which engine carries the event bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BusKind {
    /// Embedded SQLite in `storage.data_dir` (the default).
    #[default]
    Sqlite,
    /// In memory: lost on exit; for trials and tests.
    Memory,
    /// NATS JetStream at `bus.url` (build feature `nats`).
    Nats,
    /// RabbitMQ at `bus.url` (build feature `rabbitmq`).
    Rabbitmq,
    /// Redis Streams at `bus.url` (build feature `redis`).
    Redis,
}

/// `[bus]`: the event bus backend and its HTTP API limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BusConfig {
    /// The engine. Default `sqlite`.
    pub(crate) kind: BusKind,
    /// Server URL for `nats`, `rabbitmq` and `redis`.
    pub(crate) url: Option<String>,
    /// Prefix of every stream, queue, exchange or key Flotilla creates. Default `flotilla`.
    pub(crate) prefix: String,
    /// Limits of `/api/v1/bus`.
    pub(crate) api: flotilla_broker::Options,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Sqlite,
            url: None,
            prefix: "flotilla".into(),
            api: Default::default(),
        }
    }
}

/// Which engine carries the event store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// Embedded SQLite in `storage.data_dir` (the default).
    #[default]
    Sqlite,
    /// In memory: lost on exit.
    Memory,
    /// PostgreSQL at `eventstore.url` (build feature `postgres`).
    Postgres,
}

/// `[eventstore]`: the event store backend and its HTTP API limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EventStoreConfig {
    /// The engine. Default `sqlite`.
    pub(crate) kind: StoreKind,
    /// PostgreSQL URL for `postgres`.
    pub(crate) url: Option<String>,
    /// PostgreSQL schema. Default `flotilla`.
    pub(crate) schema: String,
    /// Limits of `/api/v1/streams`.
    pub(crate) api: flotilla_store::Options,
}

impl Default for EventStoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Sqlite,
            url: None,
            schema: "flotilla".into(),
            api: Default::default(),
        }
    }
}

/// `[gateway]`: the API gateway's listener and its routing file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GatewayConfig {
    /// Run the gateway. Default `true`.
    pub(crate) enabled: bool,
    /// Client traffic listener. Default `127.0.0.1:8080`.
    pub(crate) listen: SocketAddr,
    /// Threads serving client traffic, each an event loop with its own socket on `listen`
    /// and its own upstream connections. Default 0: one per core.
    pub(crate) workers: usize,
    /// Routes, upstreams, auth and limits (see docs/gateway.md); reloaded on SIGHUP. Without
    /// it the gateway starts with no routes and answers 404.
    pub(crate) routes_file: Option<PathBuf>,
    /// The Redis server that routes with `rate_limit.shared = true` count against, shared by
    /// every replica configured with the same server and prefix. Absent: limits stay in
    /// memory and such routes are refused.
    pub(crate) shared_rate_limits: Option<SharedRateLimitsConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            routes_file: None,
            shared_rate_limits: None,
        }
    }
}

/// `[gateway.shared_rate_limits]`: where replicas share their rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedRateLimitsConfig {
    /// Redis server URL (`redis://host:6379`); needs a build with `--features redis`.
    pub(crate) url: String,
    /// First part of every key (`<prefix>:rl:<route>:<caller>`). Default `flotilla`.
    #[serde(default = "default_prefix")]
    pub(crate) prefix: String,
    /// Longest wait for one answer before the route's `on_shared_failure` applies.
    /// Default `50ms`.
    #[serde(default = "default_shared_timeout", with = "humantime_serde")]
    pub(crate) timeout: std::time::Duration,
}

fn default_prefix() -> String {
    "flotilla".into()
}

fn default_shared_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(50)
}

/// `[discovery]`: the registry that roles running without one of their own
/// (`flotilla gateway`, `flotilla bus`) discover services in, through a local cache each
/// followed service's changes are pushed into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DiscoveryConfig {
    /// The registry's base URL (`http://registry:4400`). Unset: a gateway resolves static
    /// upstreams only and the bus pushes to `url` subscriptions only.
    pub(crate) registry_url: Option<String>,
}

/// `[sagas]`: the saga orchestrator of the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SagasConfig {
    /// Definition files (`.toml` or `.json`), as paths or glob patterns (`sagas/*.toml`),
    /// loaded at start. A pattern that matches nothing, or a file that does not parse or
    /// validate, stops `up` and `config check`. Default: none (the API still answers).
    pub(crate) definitions: Vec<String>,
    /// Set when several control planes share one event store (PostgreSQL): each drives the
    /// sagas it started and takes over those of one whose lease ran out (docs/sagas.md).
    pub(crate) lease: Option<SagaLeaseConfig>,
}

/// `[sagas.lease]`: this orchestrator's lease among those sharing the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SagaLeaseConfig {
    /// Unique among the orchestrators sharing the store, stable across restarts.
    pub(crate) owner: String,
    /// How long the lease lasts unrenewed (renewed every third of it); default 10s.
    #[serde(default = "default_saga_lease_ttl", with = "humantime_serde")]
    pub(crate) ttl: std::time::Duration,
}

fn default_saga_lease_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// The whole configuration of `flotilla up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PlatformConfig {
    /// The control plane's HTTP listener and the SDK settings it runs with (`[server]`).
    pub(crate) server: ServiceConfig,
    /// Embedded storage (`[storage]`).
    pub(crate) storage: StorageConfig,
    /// The service registry (`[registry]`).
    pub(crate) registry: flotilla_registry::Options,
    /// The event bus (`[bus]`).
    pub(crate) bus: BusConfig,
    /// The event store (`[eventstore]`).
    pub(crate) eventstore: EventStoreConfig,
    /// The API gateway (`[gateway]`).
    pub(crate) gateway: GatewayConfig,
    /// The saga orchestrator (`[sagas]`).
    pub(crate) sagas: SagasConfig,
    /// The remote registry of the gateway and bus roles (`[discovery]`).
    pub(crate) discovery: DiscoveryConfig,
    /// Span export over OTLP (`[tracing]`; off by default; docs/observability.md).
    pub(crate) tracing: flotilla::telemetry::TracingOptions,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        let server = ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4400)),
            ..ServiceConfig::default()
        };
        Self {
            server,
            storage: StorageConfig::default(),
            registry: Default::default(),
            bus: BusConfig::default(),
            eventstore: EventStoreConfig::default(),
            gateway: GatewayConfig::default(),
            sagas: SagasConfig::default(),
            discovery: DiscoveryConfig::default(),
            tracing: Default::default(),
        }
    }
}

impl Validate for PlatformConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| ConfigError {
            key: format!("server.{}", e.key),
            ..e
        })?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        let component =
            |key: &str, r: Result<(), String>| r.map_err(|m| ConfigError::invalid(key, m));
        component(
            "registry",
            self.registry.validate().map_err(|e| e.to_string()),
        )?;
        component(
            "registry.token",
            self.registry
                .check_exposure(self.server.listen)
                .map_err(|e| e.to_string()),
        )?;
        component(
            "tracing",
            self.tracing.validate().map_err(|e| e.to_string()),
        )?;
        component(
            "bus.api",
            self.bus.api.validate().map_err(|e| e.to_string()),
        )?;
        component(
            "eventstore.api",
            self.eventstore.api.validate().map_err(|e| e.to_string()),
        )?;
        let needs_url = matches!(
            self.bus.kind,
            BusKind::Nats | BusKind::Rabbitmq | BusKind::Redis
        );
        if needs_url && self.bus.url.is_none() {
            return Err(ConfigError::invalid(
                "bus.url",
                "is required for this bus.kind",
            ));
        }
        if self.eventstore.kind == StoreKind::Postgres && self.eventstore.url.is_none() {
            return Err(ConfigError::invalid(
                "eventstore.url",
                "is required when eventstore.kind = \"postgres\"",
            ));
        }
        if let Some(url) = &self.discovery.registry_url
            && !url.starts_with("http://")
        {
            return Err(ConfigError::invalid(
                "discovery.registry_url",
                format!("{url:?} must be http://host:port"),
            ));
        }
        if let Some(shared) = &self.gateway.shared_rate_limits
            && shared.timeout.is_zero()
        {
            return Err(ConfigError::invalid(
                "gateway.shared_rate_limits.timeout",
                "must be above 0",
            ));
        }
        if self.gateway.enabled && self.gateway.listen == self.server.listen {
            return Err(ConfigError::invalid(
                "gateway.listen",
                "must differ from server.listen",
            ));
        }
        Ok(())
    }
}

impl PlatformConfig {
    /// Defaults, then `file`, then `FLOTILLA_*` variables (not the command line's own);
    /// validated.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        crate::settings::load(file)
    }
}
