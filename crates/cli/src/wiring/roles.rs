//! The single-component roles (`flotilla gateway`, `flotilla bus`, `flotilla store`): the same
//! backends and components `up` builds, one at a time, each opening the embedded database
//! only when its engine is SQLite.

use std::sync::Arc;

use flotilla_discovery::Discovery;

use super::backends::{self, Storage};
use super::remote::RemoteDiscovery;
use crate::platform::PlatformConfig;

/// A component built alone, and the embedded database it opened (to checkpoint on a clean
/// shutdown), if its engine is SQLite.
#[derive(Debug)]
pub(crate) struct Alone<T> {
    pub(crate) component: T,
    pub(crate) db: Option<flotilla_sqlite::Database>,
}

/// The gateway with its upstreams resolved through the remote registry (`[discovery]`), and
/// that discovery source, whose first answers readiness waits for.
pub(crate) fn gateway(
    config: &PlatformConfig,
) -> anyhow::Result<(flotilla_gateway::Gateway, RemoteDiscovery)> {
    backends::require_built(config)?;
    let discovery = RemoteDiscovery::connect(&config.discovery, config.registry.token.as_deref())?;
    // `gateway.enabled` switches the gateway off inside `up`; the gateway role always runs it.
    let mut enabled = config.clone();
    enabled.gateway.enabled = true;
    let gateway = super::gateway(&enabled, Arc::new(discovery.clone()))?
        .ok_or_else(|| anyhow::anyhow!("the gateway was not built although enabled"))?;
    Ok((gateway, discovery))
}

/// The event bus API over the configured engine; push subscriptions naming a `service`
/// resolve it through the remote registry when `[discovery]` names one.
pub(crate) async fn bus(
    config: &PlatformConfig,
) -> anyhow::Result<(Alone<flotilla_broker::Broker>, RemoteDiscovery)> {
    backends::require_built(config)?;
    let mut opened = None;
    let backend = backends::bus_opening(&config.bus, || {
        let storage = Storage::open(&config.storage.data_dir)?;
        opened = Some(storage.database());
        Ok(storage)
    })
    .await?;
    let discovery = RemoteDiscovery::connect(&config.discovery, config.registry.token.as_deref())?;
    let source: Arc<dyn Discovery> = Arc::new(discovery.clone());
    let broker = super::broker(config, backend, source)?;
    let alone = Alone {
        component: broker,
        db: opened,
    };
    Ok((alone, discovery))
}

/// The event-store API over the configured engine, its appends counted in `metrics`.
pub(crate) async fn store(
    config: &PlatformConfig,
    metrics: &flotilla::metrics::Metrics,
) -> anyhow::Result<Alone<flotilla_store::StoreApi>> {
    backends::require_built(config)?;
    let mut opened = None;
    let events = backends::event_store_opening(&config.eventstore, || {
        let storage = Storage::open(&config.storage.data_dir)?;
        opened = Some(storage.database());
        Ok(storage)
    })
    .await?;
    let api = super::store(config, super::instrumented(events, metrics))?;
    Ok(Alone {
        component: api,
        db: opened,
    })
}
