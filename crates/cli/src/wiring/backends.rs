//! Opening the configured backends. A backend left out of this build (cargo feature off) is a
//! configuration error naming the feature to build with.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use flotilla_bus::Backend;
use flotilla_discovery::catalog::CatalogStore;
use flotilla_eventstore::EventStore;

use crate::platform::{BusConfig, BusKind, EventStoreConfig, StoreKind};

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

    pub(crate) fn catalog(&self) -> anyhow::Result<Arc<dyn CatalogStore>> {
        let catalog = flotilla_sqlite::catalog::SqliteCatalog::open(self.db.clone())
            .context("cannot open the registry catalog")?;
        Ok(Arc::new(catalog))
    }
}

pub(crate) async fn bus(config: &BusConfig, storage: &Storage) -> anyhow::Result<Arc<dyn Backend>> {
    let url = config.url.clone().unwrap_or_default();
    Ok(match config.kind {
        BusKind::Sqlite => {
            let options = flotilla_sqlite::bus::BusOptions::default();
            Arc::new(
                flotilla_sqlite::bus::SqliteBus::open(storage.db.clone(), options)
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
    anyhow::bail!("[gateway.shared_rate_limits] needs a build with `--features redis`")
}

#[cfg(not(feature = "nats"))]
async fn nats(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!("bus.kind = \"nats\" needs a build with `--features nats`")
}

#[cfg(not(feature = "rabbitmq"))]
async fn rabbitmq(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!("bus.kind = \"rabbitmq\" needs a build with `--features rabbitmq`")
}

#[cfg(not(feature = "redis"))]
async fn redis(_: String, _: &str) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!("bus.kind = \"redis\" needs a build with `--features redis`")
}

pub(crate) async fn event_store(
    config: &EventStoreConfig,
    storage: &Storage,
) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.kind {
        StoreKind::Sqlite => {
            let store =
                flotilla_sqlite::eventstore::SqliteEventStore::open(storage.db.clone(), None)
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
    anyhow::bail!("eventstore.kind = \"postgres\" needs a build with `--features postgres`")
}
