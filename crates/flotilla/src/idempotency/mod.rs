//! Idempotent HTTP steps: a route that does its work once per `Idempotency-Key`, however often
//! the caller (a saga step, a `ServiceClient` retry) sends it.
//!
//! [`IdempotencyLayer`] records each key in the service's own event store (any
//! [`EventStore`]: embedded, PostgreSQL, or the platform's), one stream per key
//! (`idem-<scope>-<key>`):
//!
//! - the first request claims the key (an append at "no stream", with a lease), runs the
//!   handler and stores its answer (status, `content-type`, `location`, `etag`, body);
//! - a repeat gets the stored answer without running the handler, with `Idempotent-Replayed: true`;
//! - a repeat while the first still runs gets a problem+json with `Retry-After` (503 by default,
//!   see [`IdempotencyLayer::in_progress_status`]);
//! - a repeat with another method, path or body is a 422: a key names one request;
//! - a 5xx, 408 or 429 answer is not stored: the key is released and a retry runs the
//!   handler again;
//! - a claim whose lease ran out (its process died mid-request) is taken over by the next
//!   request; the store's expected-version check lets only one taker win.
//!
//! Requests without the header pass through, unless [`IdempotencyLayer::require_key`].
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use flotilla::eventsourcing::{EventStore, MemoryEventStore};
//! use flotilla::idempotency::IdempotencyLayer;
//!
//! let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
//! let routes: Router = Router::new()
//!     .route("/reservations", post(|| async { "reserved" }))
//!     .route_layer(IdempotencyLayer::new(store, "inventory").require_key());
//! ```

mod flow;
mod key;
mod record;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_eventstore::EventStore;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

/// The request header that carries the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The answer header set on a stored answer sent again.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Makes the routes it wraps idempotent by `Idempotency-Key` (see the [module](self)).
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    store: Arc<dyn EventStore>,
    scope: String,
    lease: Duration,
    required: bool,
    in_progress: StatusCode,
}

impl IdempotencyLayer {
    /// Keys recorded in `store` under `scope` (usually the service's name: two services on one
    /// store keep their keys apart). Claims last 60 s; see [`lease`](Self::lease).
    pub fn new(store: Arc<dyn EventStore>, scope: impl Into<String>) -> Self {
        let config = Config {
            store,
            scope: scope.into(),
            lease: Duration::from_secs(60),
            required: false,
            in_progress: StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            config: Arc::new(config),
        }
    }

    /// How long a claim holds the key before another request may take it over. Make it longer
    /// than the handler ever runs: a live handler whose claim is taken over runs twice.
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|c| c.lease = lease)
    }

    /// Answers 400 to a request without the header instead of passing it through.
    pub fn require_key(self) -> Self {
        self.with(|c| c.required = true)
    }

    /// The status of the answer to a repeat that arrives while the first request still runs.
    /// 503 by default, because the saga orchestrator and `ServiceClient` retry 503 and take
    /// 409 as a final refusal; set 409 for callers that follow the IETF Idempotency-Key draft.
    pub fn in_progress_status(self, status: StatusCode) -> Self {
        self.with(|c| c.in_progress = status)
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`IdempotencyLayer`] wraps a route in.
#[derive(Debug, Clone)]
pub struct Idempotent<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Service<Request> for Idempotent<S>
where
    S: Service<Request, Error = Infallible> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was made ready is the one that serves this request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move { Ok(flow::handle(&config, ready, req).await) })
    }
}
