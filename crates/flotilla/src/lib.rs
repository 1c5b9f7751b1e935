//! The Flotilla service SDK.
//!
//! A service built with [`Microservice`] gets, with no code of its own: `GET /health`
//! (liveness with pluggable checks), `GET /ready` (readiness: 503 until started and while
//! draining), `GET /metrics` (Prometheus text), `GET /` (name, version, description); request
//! ids and W3C trace context on every request and in every log line; errors as RFC 9457
//! problem+json; a request body limit and request timeout; graceful shutdown on SIGTERM/SIGINT
//! (readiness flips first, a drain delay, in-flight requests finish within a deadline, hooks
//! run); typed configuration from a file plus `FLOTILLA_` environment overrides.
//!
//! Event handlers ([`MicroserviceBuilder::on_event`]) and hosted projections
//! ([`MicroserviceBuilder::projection`], rebuilt through `/admin/projections`) are managed
//! parts of the service: they start before it reports ready and stop cleanly on shutdown.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use flotilla::Microservice;
//!
//! # async fn run() -> Result<(), flotilla::Error> {
//! let routes = Router::new().route("/hello", get(|| async { "hello" }));
//! Microservice::builder("greeter")?
//!     .version("1.0.0")
//!     .routes(routes)
//!     .build()?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! This crate depends on contracts (never on another component); the binary and services
//! choose backends. The one backend it can bring is the platform backend, behind the
//! `platform` feature ([`platform::Platform`]): the bus and event store of a running control
//! plane over HTTP, so a service needs nothing but the control plane's URL.

#[cfg(feature = "eventsourcing")] // the admin routes are the hosted projections' only
mod admin;
pub mod config;
mod error;
#[cfg(feature = "events")]
mod event_handlers;
pub mod health;
#[cfg(feature = "eventsourcing")]
pub mod idempotency;
mod lifecycle;
mod lifecycle_signals;
mod limits;
pub mod metrics;
mod middleware;
mod observe_service;
mod parts;
#[cfg(feature = "platform")]
pub mod platform;
pub mod problem;
mod problem_ids;
#[cfg(feature = "eventsourcing")]
mod projections;
#[cfg(feature = "registry")]
mod registration;
mod service;
mod streams;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ConfigError, ServiceConfig};
pub use error::Error;
pub use health::{CheckResult, CheckStatus, HealthCheck};
pub use lifecycle::{Lifecycle, State};
pub use middleware::{REQUEST_ID, RequestContext, TRACEPARENT};
pub use problem::{FieldError, Json, Problem};
#[cfg(feature = "registry")]
pub use registration::SelfRegistration;
pub use service::{Hook, HookContext, Microservice, MicroserviceBuilder, ServiceHandle};
pub use tokio_util::sync::CancellationToken;

pub use flotilla_core as core;

/// The resilient service client: discovery, load balancing, timeouts, retries and breakers.
#[cfg(feature = "client")]
pub use flotilla_client as client;

/// Publish and subscribe on the event bus (CloudEvents, consumer groups, retries, dead letters).
#[cfg(feature = "events")]
pub use flotilla_bus as events;

/// Event sourcing: aggregates, repositories with snapshots, projections, upcasters.
#[cfg(feature = "eventsourcing")]
pub use flotilla_eventstore as eventsourcing;

/// The registry client: a discovery cache fed by the registry's watch stream.
#[cfg(feature = "registry")]
pub use flotilla_registry_client as registry;
