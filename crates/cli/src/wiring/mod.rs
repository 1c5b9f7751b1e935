//! Wiring: configuration -> backends -> components. The only place that knows every crate.

pub(crate) mod backends;
pub(crate) mod backup;
mod remote;
pub(crate) mod roles;
mod sagas;

use std::sync::Arc;

use anyhow::Context as _;
use flotilla_discovery::Discovery;
use serde_json::json;

use crate::platform::PlatformConfig;

/// Which parts a command runs: `flotilla up` runs them all, a role command one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Registry, bus, event store and gateway.
    All,
    /// The registry alone (`flotilla registry`).
    Registry,
    /// The saga orchestrator and its API on the configured event store and bus, with a
    /// registry its HTTP steps discover services in (`flotilla orchestrator`).
    Orchestrator,
}

/// Every component of the command, built and ready to serve.
#[derive(Debug)]
pub(crate) struct Platform {
    pub(crate) registry: flotilla_registry::Registry,
    pub(crate) broker: Option<flotilla_broker::Broker>,
    pub(crate) store: Option<flotilla_store::StoreApi>,
    pub(crate) gateway: Option<flotilla_gateway::Gateway>,
    /// The saga orchestrator, with every unfinished instance resumed.
    pub(crate) sagas: Option<flotilla_saga::Orchestrator>,
    /// The embedded database: backed up online, checkpointed on a clean shutdown.
    pub(crate) db: flotilla_sqlite::Database,
    /// What runs, on which backend, for `/api/v1/platform` and the start-up log.
    pub(crate) summary: serde_json::Value,
}

/// Opens the backends the configuration names and builds the components on them.
pub(crate) async fn build(
    config: &PlatformConfig,
    role: Role,
    metrics: &flotilla::metrics::Metrics,
) -> anyhow::Result<Platform> {
    backends::require_built(config)?;
    let storage = backends::Storage::open(&config.storage.data_dir)?;
    let catalog = backends::catalog(&config.registry.catalog, &storage).await?;
    let registry = flotilla_registry::Registry::new(config.registry.clone(), catalog)
        .await
        .context("cannot start the registry")?;
    // Scrapers of the control plane's `/metrics` see the registry too.
    metrics.register(|r| registry.register_metrics(r));
    let (broker, store, gateway, sagas) = match role {
        Role::Registry => (None, None, None, None),
        Role::Orchestrator => {
            let bus = backends::bus(&config.bus, &storage).await?;
            let events = instrumented(
                backends::event_store(&config.eventstore, &storage).await?,
                metrics,
            );
            let discovery: Arc<dyn Discovery> = Arc::new(registry.clone());
            let orchestrator = orchestrator(config, bus, events, discovery, metrics).await?;
            (None, None, None, Some(orchestrator))
        }
        Role::All => {
            let bus = backends::bus(&config.bus, &storage).await?;
            let events = instrumented(
                backends::event_store(&config.eventstore, &storage).await?,
                metrics,
            );
            let discovery: Arc<dyn Discovery> = Arc::new(registry.clone());
            let orchestrator = orchestrator(
                config,
                bus.clone(),
                events.clone(),
                discovery.clone(),
                metrics,
            )
            .await?;
            (
                Some(broker(config, bus, discovery.clone())?),
                Some(store(config, events)?),
                gateway(config, discovery)?,
                Some(orchestrator),
            )
        }
    };
    let summary = json!({
        "components": {
            "registry": { "api": "/api/v1/registry", "consul": "/v1", "storage": "sqlite" },
            "bus": broker.as_ref().map(|_| json!({ "api": "/api/v1/bus", "backend": config.bus.kind })),
            "eventstore": store.as_ref().map(|_| json!({ "api": "/api/v1/streams", "backend": config.eventstore.kind })),
            "gateway": gateway.as_ref().map(|_| json!({
                "listen": config.gateway.listen, "admin": "/api/v1/gateway",
                "routes_file": config.gateway.routes_file,
            })),
        },
        "storage": { "data_dir": config.storage.data_dir },
        "dashboard": flotilla_dashboard::PATH,
        "sagas": sagas.as_ref().map(|o| json!({
            "api": "/api/v1/sagas",
            "definitions": o.definitions().iter().map(|d| json!({ "name": d.name, "version": d.version })).collect::<Vec<_>>(),
        })),
    });
    Ok(Platform {
        registry,
        broker,
        store,
        gateway,
        sagas,
        db: storage.database(),
        summary,
    })
}

async fn orchestrator(
    config: &PlatformConfig,
    bus: Arc<dyn flotilla_bus::Backend>,
    events: Arc<dyn flotilla_eventstore::EventStore>,
    discovery: Arc<dyn Discovery>,
    metrics: &flotilla::metrics::Metrics,
) -> anyhow::Result<flotilla_saga::Orchestrator> {
    let bus = flotilla_bus::Bus::new(bus);
    let lease = config.sagas.lease.as_ref();
    sagas::start(&config.sagas, events, bus, discovery, metrics, lease).await
}

fn broker(
    config: &PlatformConfig,
    bus: Arc<dyn flotilla_bus::Backend>,
    discovery: Arc<dyn Discovery>,
) -> anyhow::Result<flotilla_broker::Broker> {
    Ok(flotilla_broker::Broker::new(config.bus.api.clone(), bus)
        .context("invalid [bus.api]")?
        .with_discovery(discovery))
}

fn store(
    config: &PlatformConfig,
    events: Arc<dyn flotilla_eventstore::EventStore>,
) -> anyhow::Result<flotilla_store::StoreApi> {
    flotilla_store::StoreApi::new(config.eventstore.api.clone(), events)
        .context("invalid [eventstore.api]")
}

/// Wraps the event store so appends, conflicts and latency show in the control plane's
/// `/metrics`.
fn instrumented(
    store: Arc<dyn flotilla_eventstore::EventStore>,
    metrics: &flotilla::metrics::Metrics,
) -> Arc<dyn flotilla_eventstore::EventStore> {
    let mut registered = None;
    metrics.register(|r| registered = Some(flotilla_store::metrics::Metrics::register(r)));
    match registered {
        Some(m) => Arc::new(flotilla_store::metrics::Instrumented::new(store, m)),
        None => store,
    }
}

/// Everything `up` would refuse that can be known without opening storage or reaching a
/// server: an engine this binary was built without, a routes file that is missing or
/// invalid (unknown keys, routes to undeclared upstreams), a saga definition file that is
/// missing or invalid. `config check` runs it, so a
/// configuration it calls valid is one `up` starts with.
pub(crate) fn check(config: &PlatformConfig) -> anyhow::Result<()> {
    backends::require_built(config)?;
    // Routes are checked against no instances: resolution happens per request.
    let discovery = Arc::new(flotilla_discovery::StaticDiscovery::new());
    gateway(config, discovery.clone())?;
    // Definitions are checked against an orchestrator with every kind of step available.
    let bus = flotilla_bus::Bus::new(Arc::new(flotilla_bus::memory::MemoryBackend::new()));
    let store = Arc::new(flotilla_eventstore::memory::MemoryEventStore::new());
    sagas::build(
        sagas::load(&config.sagas)?,
        store,
        bus,
        discovery,
        Default::default(),
        config.sagas.lease.as_ref(),
    )?;
    Ok(())
}

/// The gateway resolves upstreams straight from the in-process registry (passed as
/// `discovery`): the registry implements the discovery contract, so no network hop and no
/// second cache.
fn gateway(
    config: &PlatformConfig,
    discovery: Arc<dyn Discovery>,
) -> anyhow::Result<Option<flotilla_gateway::Gateway>> {
    if !config.gateway.enabled {
        return Ok(None);
    }
    let options = match &config.gateway.routes_file {
        None => flotilla_gateway::GatewayOptions::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read gateway.routes_file {}", path.display()))?;
            flotilla_gateway::GatewayOptions::from_toml(&text)
                .with_context(|| format!("invalid gateway.routes_file {}", path.display()))?
        }
    };
    let mut builder = flotilla_gateway::Gateway::builder(options, discovery);
    if let Some(shared) = &config.gateway.shared_rate_limits {
        let limiter = backends::shared_rate_limiter(shared)?;
        builder = builder.shared_rate_limiter(limiter, shared.timeout);
    }
    Ok(Some(
        builder.build().context("invalid gateway configuration")?,
    ))
}
