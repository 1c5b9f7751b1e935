//! The service registry (layer L3): the catalog of services and their instances, health
//! checks, discovery reads, watches, and the HTTP API (native under `/api/v1/registry`, plus a
//! Consul-compatible subset at Consul's own paths).
//!
//! It owns the catalog's in-memory state, check scheduling and the HTTP surface. It does not
//! own storage — the catalog is written through the
//! [`CatalogStore`](flotilla_discovery::catalog::CatalogStore) contract, which the binary
//! fills with the SQLite (or in-memory) implementation — nor the client side: services
//! register and discover through `flotilla-registry-client`. The binary (`flotilla registry`,
//! `flotilla up`) depends on it; components never do. [`Registry`] also implements
//! [`Discovery`](flotilla_discovery::Discovery), so an all-in-one process can hand it to the
//! gateway without a network hop.
//!
//! Shape: [`Options`] -> [`Registry::new`] (loads the catalog) -> [`Registry::router`] (merge
//! into the control plane) and [`Registry::run`] (health checks until shutdown).

mod catalog;
pub mod check;
mod drain;
mod error;
mod http;
mod metrics;
mod options;
mod record;
mod registry;
mod replica;

pub use catalog::Change;
pub use check::{CheckKind, CheckSpec, Counters, Outcome};
pub use error::Error;
pub use http::REVISION_HEADER;
pub use options::{CatalogKind, CatalogOptions, Options};
pub use record::{Drain, DrainKind, InstanceRecord, Registration};
pub use registry::{Registry, ServiceSummary};
