//! `flotilla up`: the whole platform in one process.
//!
//! The control plane is itself a `Microservice`, so it gets health, readiness, metrics,
//! request ids, problem+json errors and graceful shutdown from the SDK like any service. The
//! registry, bus, event-store and sagas APIs are merged into its router; the gateway serves client
//! traffic on its own listener as a background task of the same service.

use axum::Router;
use axum::routing::get;
use flotilla::MicroserviceBuilder;

use super::demo::Demo;
use super::role;
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
    role::init_telemetry(&config, "flotilla")?;
    super::runtime()?.block_on(serve(config, role, demo))
}

async fn serve(config: PlatformConfig, role: Role, demo: Option<Demo>) -> Result<(), Failure> {
    let builder = role::builder("flotilla", "Flotilla control plane", &config)?;
    let platform = wiring::build(&config, role, builder.metrics()).await?;
    tracing::info!(components = %platform.summary, "platform wired");
    let summary = platform.summary.clone();
    let routes = Router::new()
        .route(
            "/api/v1/platform",
            get(move || async move { axum::Json(summary) }),
        )
        .merge(platform.registry.router())
        .merge(flotilla_dashboard::router())
        .merge(role::guard_writes(guarded(&platform, &builder), &config));
    let db = platform.db.clone();
    let mut builder = background(builder.routes(routes), platform, &config).await?;
    if let Some(demo) = demo {
        builder = demo.attach(builder, &config)?;
    }
    let served = role::run(builder).await;
    role::checkpoint(&db).await;
    served
}

/// The APIs whose writes need the registry's token.
fn guarded(platform: &Platform, builder: &MicroserviceBuilder) -> Router {
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
    guarded.merge(wiring::backup::router(platform.db.clone()))
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
    if let Some(broker) = platform.broker {
        builder = role::attach_broker(builder, broker);
    }
    match platform.gateway {
        Some(gateway) => role::attach_gateway(builder, gateway, config).await,
        None => Ok(builder),
    }
}
