//! `flotilla up`: the whole platform in one process.
//!
//! The control plane is itself a `Microservice`, so it gets health, readiness, metrics,
//! request ids, problem+json errors and graceful shutdown from the SDK like any service.

use axum::Router;
use axum::routing::get;
use flotilla::Microservice;

use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;

pub(crate) fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let config = PlatformConfig::load(args.config.as_deref())?;
    flotilla::telemetry::init(config.server.log_format, &config.server.log_level);
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: PlatformConfig) -> Result<(), Failure> {
    let listen = config.server.listen;
    let components = serde_json::json!({
        "components": [],
        "storage": { "data_dir": config.storage.data_dir },
    });
    let routes = Router::new().route(
        "/api/v1/platform",
        get(move || async move { axum::Json(components) }),
    );
    let service = Microservice::builder("flotilla")
        .map_err(|e| Failure::Runtime(e.into()))?
        .version(env!("CARGO_PKG_VERSION"))
        .description("Flotilla control plane")
        .config(config.server)
        .routes(routes)
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    tracing::info!(%listen, "control plane starting; components will be listed at /api/v1/platform");
    service.run().await.map_err(|e| Failure::Runtime(e.into()))
}
