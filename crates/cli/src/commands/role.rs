//! What every long-running command shares: telemetry, the SDK's `Microservice` (health,
//! readiness, metrics, request ids, graceful drain on SIGTERM), the write guard, and the
//! gateway and bus parts `up` and the single-role commands both attach.

use std::sync::Arc;

use axum::Router;
use flotilla::{Microservice, MicroserviceBuilder};

use crate::Failure;
use crate::platform::PlatformConfig;

/// Starts logging (and span export when `[tracing]` asks) as `service`.
pub(crate) fn init_telemetry(config: &PlatformConfig, service: &str) -> Result<(), Failure> {
    let (format, level) = (config.server.log_format, &config.server.log_level);
    flotilla::telemetry::init_with_tracing(format, level, &config.tracing, service)
        .map_err(|e| Failure::Usage(format!("tracing: {e}")))
}

/// The SDK service a command runs as, listening on `server.listen`.
pub(crate) fn builder(
    name: &str,
    description: &str,
    config: &PlatformConfig,
) -> Result<MicroserviceBuilder, Failure> {
    Ok(Microservice::builder(name)
        .map_err(|e| Failure::Runtime(e.into()))?
        .version(env!("CARGO_PKG_VERSION"))
        .description(description)
        .config(config.server.clone()))
}

/// Builds and runs the service until SIGTERM or Ctrl-C has drained it.
pub(crate) async fn run(builder: MicroserviceBuilder) -> Result<(), Failure> {
    let service = builder.build().map_err(|e| Failure::Usage(e.to_string()))?;
    service.run().await.map_err(|e| Failure::Runtime(e.into()))
}

/// `routes` with every write needing `registry.token` when one is set: the registry checks
/// its own token, and the bus, event-store and gateway-admin APIs take the same one.
pub(crate) fn guard_writes(routes: Router, config: &PlatformConfig) -> Router {
    let token = config.registry.token.clone().map(Arc::<str>::from);
    routes.layer(axum::middleware::from_fn(move |req, next| {
        crate::auth::require_token_for_writes(token.clone(), req, next)
    }))
}

/// Moves the WAL into the database file, so after a clean shutdown `flotilla.db` alone holds
/// everything (a copy of it is a whole backup). A failure loses nothing: the WAL stays and is
/// replayed at the next start.
pub(crate) async fn checkpoint(db: &flotilla_sqlite::Database) {
    match db.checkpoint().await {
        Ok(true) => tracing::info!("database checkpointed: flotilla.db holds every write"),
        Ok(false) => tracing::warn!("database checkpoint incomplete: keep flotilla.db-wal with it"),
        Err(e) => {
            tracing::warn!(error = %e, "database checkpoint failed: keep flotilla.db-wal with it")
        }
    }
}

/// The bus's push subscriptions and consumer-lag metrics, as a task that stops with the
/// service.
pub(crate) fn attach_broker(
    builder: MicroserviceBuilder,
    broker: flotilla_broker::Broker,
) -> MicroserviceBuilder {
    builder
        .metrics()
        .register(|registry| broker.register_metrics(registry));
    builder.task("bus", move |token| async move {
        if let Err(e) = broker.run(token).await {
            tracing::error!(error = %e, "push subscriptions stopped");
        }
    })
}

/// The gateway's client listener on `gateway.listen`, its upkeep and, with a routes file,
/// its hot reload, as tasks of the service: on shutdown the listener stops accepting and
/// requests in flight finish.
pub(crate) async fn attach_gateway(
    builder: MicroserviceBuilder,
    gateway: flotilla_gateway::Gateway,
    config: &PlatformConfig,
) -> Result<MicroserviceBuilder, Failure> {
    builder
        .metrics()
        .register(|registry| gateway.register_metrics(registry));
    let addr = config.gateway.listen;
    // One event loop per worker thread, each with its own socket on `addr`.
    let listeners =
        flotilla_gateway::WorkerListeners::bind(addr, config.gateway.workers).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!(
                "cannot listen on gateway.listen {addr}: {e}"
            ))
        })?;
    tracing::info!(%addr, workers = listeners.workers(), "gateway listening");
    let (serving, upkeep) = (gateway.clone(), gateway.clone());
    let mut builder = builder
        .task("gateway", move |token| async move {
            if let Err(e) = serving.serve_workers(listeners, token).await {
                tracing::error!(error = %e, "gateway stopped");
            }
        })
        .task("gateway-upkeep", move |token| async move {
            upkeep.run(token).await
        });
    if let Some(path) = config.gateway.routes_file.clone() {
        // SIGHUP or a change to the file reloads the routes; an invalid file is refused and
        // the running routes keep serving.
        builder = builder.task("gateway-reload", move |token| async move {
            gateway
                .watch_config(path, std::time::Duration::from_secs(2), token)
                .await;
        });
    }
    Ok(builder)
}
