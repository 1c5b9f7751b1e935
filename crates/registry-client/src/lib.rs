//! The registry client (layer L2): a discovery source fed by the Flotilla registry, and the
//! self-registration agent a service runs.
//!
//! [`RegistryClient`] implements [`Discovery`](flotilla_discovery::Discovery): the first
//! `watch` of a service starts a follower that long-polls the registry's blocking query and
//! keeps a local `watch` channel current, so resolving an instance is a memory read. When the
//! registry is unreachable the follower retries with backoff and the cache keeps the last known
//! set. [`Agent`] registers a service instance (with an HTTP or TTL check), heartbeats,
//! re-registers when the registry forgot it, and drains then deregisters on shutdown.
//!
//! It speaks the registry's HTTP API only: it does not depend on the registry component crate,
//! and exposes no HTTP-stack types. The SDK (`flotilla`) and the binary depend on it.

mod agent;
mod client;
mod error;
mod follower;

pub use agent::{Agent, Check, Registration};
pub use client::{ClientOptions, RegistryClient, ServiceSummary};
pub use error::Error;

#[cfg(feature = "dial")]
pub use flotilla_dial::{Dialer, Stream};
