//! `flotilla bus`: the event bus's HTTP API (`/api/v1/bus`, as `up` serves it) alone, over the
//! engine `[bus]` names (SQLite, NATS JetStream, RabbitMQ or Redis Streams), with its push
//! subscriptions. On `server.listen`, beside the API: `/health`, `/ready` and `/metrics`.
//! SIGTERM drains: `/ready` fails, the listener stops accepting, pushes in flight are settled,
//! event streams still open at `server.shutdown_deadline` are ended, and an embedded database
//! is checkpointed.

use super::role;
use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;
use crate::wiring;

pub(crate) fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let config = PlatformConfig::load(args.config.as_deref())?;
    role::init_telemetry(&config, "flotilla-bus")?;
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: PlatformConfig) -> Result<(), Failure> {
    let builder = role::builder("flotilla-bus", "Flotilla event bus", &config)?;
    // The engine is reached here: one that cannot be reached stops the start.
    let (bus, discovery) = wiring::roles::bus(&config).await?;
    tracing::info!(backend = ?config.bus.kind, "event bus wired");
    let builder = builder
        .routes(role::guard_writes(bus.component.router(), &config))
        .readiness_check(discovery.readiness());
    let served = role::run(role::attach_broker(builder, bus.component)).await;
    if let Some(db) = &bus.db {
        role::checkpoint(db).await;
    }
    served
}
