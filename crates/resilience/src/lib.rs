//! Resilience for calls between services (layer L1).
//!
//! This crate owns the tower layers that the gateway and the SDK's `ServiceClient` put between
//! a caller and an upstream: [`timeout`] with deadline propagation, [`retry`] with backoff and a
//! retry budget, [`breaker`] (circuit breaker), [`bulkhead`], [`rate_limit`] (GCRA through
//! governor) and [`fallback`]; [`balance`] picks an instance of a discovered service (round
//! robin, random, weighted, least outstanding, P2C with peak-EWMA, consistent hashing) and
//! ejects outliers; [`policy`] is the declarative TOML format that configures all of it;
//! [`metrics`] exports what happens to Prometheus. [`shared_rate_limit`] is the contract of a
//! rate limiter whose state several processes share (implemented on Redis by `flotilla-redis`).
//!
//! It does not own transports, discovery or configuration files: layers are generic over
//! `http::Request<B>`/`http::Response<B>` with any body, and the endpoint at the bottom of a
//! stack (a hyper client, a proxy) belongs to the caller. It depends only on `flotilla-core`.
//! `flotilla-gateway` and `flotilla-client` (re-exported by the SDK) depend on it.

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod bulkhead;
pub mod deadline;
pub mod error;
pub mod fallback;
pub mod metrics;
pub mod policy;
pub mod rate_limit;
pub mod retry;
pub mod shared_rate_limit;
pub mod timeout;

pub use error::{BoxError, Error};
