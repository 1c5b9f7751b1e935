//! `ServiceClient`: calling other services by name (layer L3).
//!
//! This crate owns the client side of service-to-service calls:
//! `client.service("users").get("/users/42").send().await?` resolves the service through the
//! [`flotilla_discovery::Discovery`] contract (a static list or the registry's watch cache),
//! picks an instance with the policy's load balancer, and sends the call through the policy's
//! stack from `flotilla-resilience` (rate limit, deadline, retries, circuit breaker, bulkhead)
//! over one pooled hyper-util client. It propagates `x-request-id`, `traceparent` (as a child
//! span) and the remaining deadline, sets `Idempotency-Key` when asked, and returns typed
//! errors ([`Error`]).
//!
//! It does not own discovery sources, policies' format or the layers themselves, and its
//! public API exposes no hyper types. The SDK (`flotilla`) re-exports it as `flotilla::client`;
//! the saga orchestrator may use it for HTTP steps.

mod client;
mod endpoint;
mod error;
mod pool;
mod request;

pub use client::{ClientBuilder, ServiceClient, ServiceRef};
pub use error::Error;
pub use flotilla_resilience::deadline::Deadline;
pub use flotilla_resilience::policy::PolicySet;
pub use request::{REQUEST_ID, RequestBuilder, Response, TRACEPARENT};
