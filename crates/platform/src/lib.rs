//! The platform backend (layer L2): the event bus and the event store of a running Flotilla
//! control plane (`flotilla up`), reached over its HTTP API, behind the same contracts a
//! linked engine implements.
//!
//! A service in its own process gets the platform's bus and store from one URL:
//!
//! ```ignore
//! let platform = flotilla_platform::ControlPlane::new(ConnectOptions::new("http://127.0.0.1:4400"))?;
//! let bus = flotilla_platform::bus::PlatformBus::new(platform.clone());        // feature `bus`
//! let store = flotilla_platform::eventstore::PlatformEventStore::connect(platform).await?; // `eventstore`
//! ```
//!
//! Both pass the same conformance suites as the engines behind the control plane, so a
//! service cannot tell them from a linked engine, and moving it to NATS or PostgreSQL later
//! is a configuration change. What HTTP cannot carry is said per backend in `docs/sdk.md`.

mod http;

#[cfg(feature = "bus")]
pub mod bus;
#[cfg(feature = "eventstore")]
pub mod eventstore;

pub use http::{CallError, ConnectOptions, ControlPlane, Problem};

#[cfg(feature = "dial")]
pub use flotilla_dial::{Dialer, Stream};
