//! `flotilla gateway`: the API gateway alone. Client traffic on `gateway.listen`, routes from
//! `gateway.routes_file` (reloaded on SIGHUP or when the file changes), upstreams from the
//! registry at `[discovery] registry_url` through a local watch-fed cache, rate limits shared
//! over Redis with `[gateway.shared_rate_limits]`. On `server.listen`: the admin API under
//! `/api/v1/gateway`, `/health`, `/ready` (once routes are loaded and the registry has
//! answered about every upstream service) and `/metrics`. SIGTERM drains: `/ready` fails,
//! then the listeners stop accepting and requests in flight finish.

use axum::Router;

use super::role;
use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;
use crate::wiring;

pub(crate) fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let config = PlatformConfig::load(args.config.as_deref())?;
    role::init_telemetry(&config, "flotilla-gateway")?;
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: PlatformConfig) -> Result<(), Failure> {
    let builder = role::builder("flotilla-gateway", "Flotilla API gateway", &config)?;
    // Routes are read and checked here: an invalid file stops the start with its error.
    let (gateway, discovery) = wiring::roles::gateway(&config)?;
    tracing::info!(
        registry = config.discovery.registry_url.as_deref().unwrap_or("(none: static upstreams only)"),
        routes_file = ?config.gateway.routes_file,
        "gateway wired"
    );
    let admin = Router::new().nest("/api/v1/gateway", gateway.admin_router());
    let builder = builder
        .routes(role::guard_writes(admin, &config))
        .readiness_check(discovery.readiness());
    role::run(role::attach_gateway(builder, gateway, &config).await?).await
}
