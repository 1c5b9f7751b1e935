//! Opening the configured backends. A backend left out of this build (cargo feature off) is a
//! configuration error naming the feature to build with.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use flotilla_bus::Backend;
use flotilla_discovery::catalog::CatalogStore;
use flotilla_eventstore::EventStore;
use flotilla_registry::{CatalogKind, CatalogOptions};

use crate::platform::{BusConfig, BusKind, EventStoreConfig, PlatformConfig, StoreKind};

/// Fails when the configuration names an engine this binary was built without (the default
/// build has them all; `--no-default-features` leaves them out).
pub(crate) fn require_built(config: &PlatformConfig) -> anyhow::Result<()> {
    let engines = [
        ("nats", cfg!(feature = "nats")),
        ("rabbitmq", cfg!(feature = "rabbitmq")),
        ("redis", cfg!(feature = "redis")),
        ("postgres", cfg!(feature = "postgres")),
    ];
    let built = |feature: &str| engines.contains(&(feature, true));
    match first_missing(config, built) {
        Some((setting, feature)) => anyhow::bail!(needs_feature(setting, feature)),
        None => Ok(()),
    }
}

/// The first setting of `config` whose engine (cargo feature) is not `built`.
fn first_missing(
    config: &PlatformConfig,
    built: impl Fn(&str) -> bool,
) -> Option<(&'static str, &'static str)> {
    let bus = match config.bus.kind {
        BusKind::Nats => Some(("bus.kind = \"nats\"", "nats")),
        BusKind::Rabbitmq => Some(("bus.kind = \"rabbitmq\"", "rabbitmq")),
        BusKind::Redis => Some(("bus.kind = \"redis\"", "redis")),
        BusKind::Sqlite | BusKind::Memory => None,
    };
    let store = (config.eventstore.kind == StoreKind::Postgres)
        .then_some(("eventstore.kind = \"postgres\"", "postgres"));
    let catalog = (config.registry.catalog.kind == CatalogKind::Postgres)
        .then_some(("registry.catalog.kind = \"postgres\"", "postgres"));
    let limits = config
        .gateway
        .shared_rate_limits
        .as_ref()
        .map(|_| ("[gateway.shared_rate_limits]", "redis"));
    [bus, store, catalog, limits]
        .into_iter()
        .flatten()
        .find(|(_, feature)| !built(feature))
}

fn needs_feature(setting: &str, feature: &str) -> String {
    format!(
        "{setting} needs a binary built with the {feature} engine (cargo feature {feature:?}, \
         part of the default build; this one was built without it)"
    )
}

/// The embedded SQLite database every embedded backend shares: one file, one writer thread,
/// so the registry, the bus and the event store group-commit together.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    db: flotilla_sqlite::Database,
}

impl Storage {
    pub(crate) fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("flotilla.db");
        let db = flotilla_sqlite::Database::open(flotilla_sqlite::Options::new(&path))
            .with_context(|| format!("cannot open the embedded database {}", path.display()))?;
        Ok(Self { db })
    }

    pub(crate) fn database(&self) -> flotilla_sqlite::Database {
        self.db.clone()
    }

    pub(crate) fn catalog(&self) -> anyhow::Result<Arc<dyn CatalogStore>> {
        let catalog = flotilla_sqlite::catalog::SqliteCatalog::open(self.db.clone())
            .context("cannot open the registry catalog")?;
        Ok(Arc::new(catalog))
    }
}

/// The bus `config` names, on the already open `storage` when it is the embedded one.
pub(crate) async fn bus(config: &BusConfig, storage: &Storage) -> anyhow::Result<Arc<dyn Backend>> {
    bus_opening(config, || Ok(storage.clone())).await
}

/// The registry catalog `options` name; `storage` is the embedded database the `sqlite` one
/// lives in.
pub(crate) async fn catalog(
    options: &CatalogOptions,
    storage: &Storage,
) -> anyhow::Result<Arc<dyn CatalogStore>> {
    Ok(match options.kind {
        CatalogKind::Sqlite => storage.catalog()?,
        CatalogKind::Memory => Arc::new(flotilla_discovery::catalog::MemoryCatalogStore::new()),
        CatalogKind::Postgres => postgres_catalog(options).await?,
    })
}

#[cfg(feature = "postgres")]
async fn postgres_catalog(options: &CatalogOptions) -> anyhow::Result<Arc<dyn CatalogStore>> {
    let mut opts = flotilla_postgres::Options::new(options.url.clone().unwrap_or_default());
    opts.schema = options.schema.clone();
    opts.pool_size = options.pool_size;
    let store = flotilla_postgres::catalog::PgCatalog::open(&opts)
        .await
        .context("cannot open the registry catalog on PostgreSQL")?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_catalog(_: &CatalogOptions) -> anyhow::Result<Arc<dyn CatalogStore>> {
    anyhow::bail!(needs_feature(
        "registry.catalog.kind = \"postgres\"",
        "postgres"
    ))
}

/// The bus `config` names; `storage` is opened only for the embedded engine, so a role on
/// NATS, RabbitMQ or Redis creates no database file.
pub(crate) async fn bus_opening(
    config: &BusConfig,
    storage: impl FnOnce() -> anyhow::Result<Storage>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let url = config.url.clone().unwrap_or_default();
    Ok(match config.kind {
        BusKind::Sqlite => {
            let options = flotilla_sqlite::bus::BusOptions::default();
            Arc::new(
                flotilla_sqlite::bus::SqliteBus::open(storage()?.db, options)
                    .context("cannot open the embedded bus")?,
            )
        }
        BusKind::Memory => Arc::new(flotilla_bus::memory::MemoryBackend::new()),
        BusKind::Nats => nats(url, &config.prefix).await?,
        BusKind::Rabbitmq => rabbitmq(url, &config.prefix).await?,
        BusKind::Redis => redis(url, &config.prefix).await?,
    })
}

#[cfg(feature = "nats")]
async fn nats(url: String, prefix: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let opts = flotilla_nats::Options {
        url,
        prefix: prefix.into(),
        ..Default::default()
    };
    Ok(Arc::new(
        flotilla_nats::NatsBackend::connect(opts)
            .await
            .context("cannot connect to NATS")?,
    ))
}

#[cfg(feature = "rabbitmq")]
async fn rabbitmq(url: String, prefix: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let opts = flotilla_amqp::Options {
        url,
        prefix: prefix.into(),
        ..Default::default()
    };
    Ok(Arc::new(
        flotilla_amqp::AmqpBackend::connect(opts)
            .await
            .context("cannot connect to RabbitMQ")?,
    ))
}

#[cfg(feature = "redis")]
async fn redis(url: String, prefix: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let opts = flotilla_redis::Options {
        url,
        prefix: prefix.into(),
        ..Default::default()
    };
    Ok(Arc::new(
        flotilla_redis::RedisBackend::connect(opts)
            .await
            .context("cannot connect to Redis")?,
    ))
}

/// The Redis limiter gateway replicas share. It connects in the background: a Redis that is
/// down at start does not stop the gateway (routes apply their `on_shared_failure` policy).
#[cfg(feature = "redis")]
pub(crate) fn shared_rate_limiter(
    config: &crate::platform::SharedRateLimitsConfig,
) -> anyhow::Result<Arc<dyn flotilla_resilience::shared_rate_limit::SharedRateLimiter>> {
    let opts = flotilla_redis::RateLimitOptions {
        url: config.url.clone(),
        prefix: config.prefix.clone(),
        ..Default::default()
    };
    Ok(Arc::new(
        flotilla_redis::RedisRateLimiter::new(&opts)
            .context("invalid gateway.shared_rate_limits")?,
    ))
}

#[cfg(not(feature = "redis"))]
pub(crate) fn shared_rate_limiter(
    _: &crate::platform::SharedRateLimitsConfig,
) -> anyhow::Result<Arc<dyn flotilla_resilience::shared_rate_limit::SharedRateLimiter>> {
    anyhow::bail!(needs_feature("[gateway.shared_rate_limits]", "redis"))
}

#[cfg(not(feature = "nats"))]
async fn nats(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(needs_feature("bus.kind = \"nats\"", "nats"))
}

#[cfg(not(feature = "rabbitmq"))]
async fn rabbitmq(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(needs_feature("bus.kind = \"rabbitmq\"", "rabbitmq"))
}

#[cfg(not(feature = "redis"))]
async fn redis(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(needs_feature("bus.kind = \"redis\"", "redis"))
}

/// The event store `config` names, on the already open `storage` when it is the embedded one.
pub(crate) async fn event_store(
    config: &EventStoreConfig,
    storage: &Storage,
) -> anyhow::Result<Arc<dyn EventStore>> {
    event_store_opening(config, || Ok(storage.clone())).await
}

/// The event store `config` names; `storage` is opened only for the embedded engine.
pub(crate) async fn event_store_opening(
    config: &EventStoreConfig,
    storage: impl FnOnce() -> anyhow::Result<Storage>,
) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.kind {
        StoreKind::Sqlite => {
            let store = flotilla_sqlite::eventstore::SqliteEventStore::open(storage()?.db, None)
                .await
                .context("cannot open the embedded event store")?;
            Arc::new(store)
        }
        StoreKind::Memory => Arc::new(flotilla_eventstore::memory::MemoryEventStore::new()),
        StoreKind::Postgres => postgres(config).await?,
    })
}

#[cfg(feature = "postgres")]
async fn postgres(config: &EventStoreConfig) -> anyhow::Result<Arc<dyn EventStore>> {
    let mut opts = flotilla_postgres::Options::new(config.url.clone().unwrap_or_default());
    opts.schema = config.schema.clone();
    let store = flotilla_postgres::eventstore::PostgresEventStore::open(&opts)
        .await
        .context("cannot open the PostgreSQL event store")?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &EventStoreConfig) -> anyhow::Result<Arc<dyn EventStore>> {
    anyhow::bail!(needs_feature("eventstore.kind = \"postgres\"", "postgres"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_left_out_of_the_build_is_named_with_its_setting() {
        let mut config = PlatformConfig::default();
        assert_eq!(
            first_missing(&config, |_| false),
            None,
            "the embedded default"
        );
        config.registry.catalog.kind = CatalogKind::Postgres;
        assert_eq!(
            first_missing(&config, |f| f != "postgres"),
            Some(("registry.catalog.kind = \"postgres\"", "postgres"))
        );
        config.registry.catalog.kind = CatalogKind::Sqlite;
        config.eventstore.kind = StoreKind::Postgres;
        assert_eq!(
            first_missing(&config, |f| f != "postgres"),
            Some(("eventstore.kind = \"postgres\"", "postgres"))
        );
        config.bus.kind = BusKind::Nats;
        assert_eq!(first_missing(&config, |_| false).map(|m| m.1), Some("nats"));
        assert_eq!(first_missing(&config, |_| true), None);
    }
}
