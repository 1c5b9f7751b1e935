//! `flotilla up`: the whole platform in one process.
//!
//! The control plane is itself a `Microservice`, so it gets health, readiness, metrics,
//! request ids, problem+json errors and graceful shutdown from the SDK like any service. The
//! registry, bus, event-store and sagas APIs are merged into its router; the gateway serves client
//! traffic on its own listener as a background task of the same service.

use axum::Router;
use axum::routing::get;
use flotilla::{Microservice, MicroserviceBuilder};

use super::demo::Demo;
use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;
use crate::wiring::{self, Platform, Role};

/// Runs the platform (the registry alone for [`Role::Registry`]); with `demo`, the example
/// shop beside it.
pub(crate) fn run(args: &ConfigArgs, role: Role, demo: Option<Demo>) -> Result<(), Failure> {
    let mut config = PlatformConfig::load(args.config.as_deref())?;
    if let Some(demo) = &demo {
        demo.prepare(&mut config)?;
    }
    let (format, level) = (config.server.log_format, &config.server.log_level);
    flotilla::telemetry::init_with_tracing(format, level, &config.tracing, "flotilla")
        .map_err(|e| Failure::Usage(format!("tracing: {e}")))?;
    super::runtime()?.block_on(serve(config, role, demo))
}

async fn serve(config: PlatformConfig, role: Role, demo: Option<Demo>) -> Result<(), Failure> {
    let builder = Microservice::builder("flotilla")
        .map_err(|e| Failure::Runtime(e.into()))?
        .version(env!("CARGO_PKG_VERSION"))
        .description("Flotilla control plane")
        .config(config.server.clone());
    let platform = wiring::build(&config, role, builder.metrics()).await?;
    tracing::info!(components = %platform.summary, "platform wired");
    let summary = platform.summary.clone();
    let mut routes = Router::new()
        .route(
            "/api/v1/platform",
            get(move || async move { axum::Json(summary) }),
        )
        .merge(platform.registry.router())
        .merge(flotilla_dashboard::router());
    let mut guarded = Router::new();
    if let Some(broker) = &platform.broker {
        guarded = guarded.merge(broker.router());
    }
    if let Some(store) = &platform.store {
        // Followers of `$all` are told the stream ended as soon as the listener closes,
        // rather than holding shutdown until its deadline.
        let store = store.clone().end_streams_on(builder.closing_token());
        guarded = guarded.merge(store.router());
    }
    if let Some(gw) = &platform.gateway {
        guarded = guarded.nest("/api/v1/gateway", gw.admin_router());
    }
    if let Some(sagas) = &platform.sagas {
        guarded = guarded.merge(flotilla_saga::api::router(sagas.clone()));
    }
    guarded = guarded.merge(wiring::backup::router(platform.db.clone()));
    let db = platform.db.clone();
    // The registry checks its own token; the other APIs' writes need the same one.
    let token = config
        .registry
        .token
        .clone()
        .map(std::sync::Arc::<str>::from);
    routes = routes.merge(guarded.layer(axum::middleware::from_fn(move |req, next| {
        crate::auth::require_token_for_writes(token.clone(), req, next)
    })));
    let mut builder = background(builder.routes(routes), platform, &config).await?;
    if let Some(demo) = demo {
        builder = demo.attach(builder, &config)?;
    }
    let service = builder.build().map_err(|e| Failure::Usage(e.to_string()))?;
    let served = service.run().await.map_err(|e| Failure::Runtime(e.into()));
    checkpoint(&db).await;
    served
}

/// Moves the WAL into the database file, so after a clean shutdown `flotilla.db` alone holds
/// everything (a copy of it is a whole backup). A failure loses nothing: the WAL stays and is
/// replayed at the next start.
async fn checkpoint(db: &flotilla_sqlite::Database) {
    match db.checkpoint().await {
        Ok(true) => tracing::info!("database checkpointed: flotilla.db holds every write"),
        Ok(false) => tracing::warn!("database checkpoint incomplete: keep flotilla.db-wal with it"),
        Err(e) => {
            tracing::warn!(error = %e, "database checkpoint failed: keep flotilla.db-wal with it")
        }
    }
}

/// The registry's health checker and the gateway run as background tasks of the control plane,
/// so they stop with it.
async fn background(
    mut builder: MicroserviceBuilder,
    platform: Platform,
    config: &PlatformConfig,
) -> Result<MicroserviceBuilder, Failure> {
    let registry = platform.registry.clone();
    builder = builder.task(
        "registry",
        move |token| async move { registry.run(token).await },
    );
    if let Some(broker) = platform.broker.clone() {
        builder
            .metrics()
            .register(|registry| broker.register_metrics(registry));
        builder = builder.task("bus", move |token| async move {
            if let Err(e) = broker.run(token).await {
                tracing::error!(error = %e, "push subscriptions stopped");
            }
        });
    }
    let Some(gateway) = platform.gateway else {
        return Ok(builder);
    };
    gateway_metrics(&builder, &gateway);
    let addr = config.gateway.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot listen on gateway.listen {addr}: {e}"
        ))
    })?;
    tracing::info!(%addr, "gateway listening");
    let (serving, upkeep) = (gateway.clone(), gateway.clone());
    builder = builder
        .task("gateway", move |token| async move {
            if let Err(e) = serving.serve(listener, token).await {
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

fn gateway_metrics(builder: &MicroserviceBuilder, gateway: &flotilla_gateway::Gateway) {
    builder
        .metrics()
        .register(|registry| gateway.register_metrics(registry));
}
