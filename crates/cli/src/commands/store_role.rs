//! `flotilla store`: the event store's HTTP API (`/api/v1/streams`, as `up` serves it) alone,
//! over the engine `[eventstore]` names (SQLite or PostgreSQL). On `server.listen`, beside the
//! API: `/health`, `/ready` and `/metrics`. SIGTERM drains: `/ready` fails, the listener stops
//! accepting, followers of `$all` are told the stream ended, and an embedded database is
//! checkpointed.

use super::role;
use crate::Failure;
use crate::cli::ConfigArgs;
use crate::platform::PlatformConfig;
use crate::wiring;

pub(crate) fn run(args: &ConfigArgs) -> Result<(), Failure> {
    let config = PlatformConfig::load(args.config.as_deref())?;
    role::init_telemetry(&config, "flotilla-store")?;
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: PlatformConfig) -> Result<(), Failure> {
    let builder = role::builder("flotilla-store", "Flotilla event store", &config)?;
    // The engine is opened here: a database that cannot be reached stops the start.
    let store = wiring::roles::store(&config, builder.metrics()).await?;
    tracing::info!(backend = ?config.eventstore.kind, "event store wired");
    let api = store
        .component
        .clone()
        .end_streams_on(builder.closing_token());
    let served = role::run(builder.routes(role::guard_writes(api.router(), &config))).await;
    if let Some(db) = &store.db {
        role::checkpoint(db).await;
    }
    served
}
