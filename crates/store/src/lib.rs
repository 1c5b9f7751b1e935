//! The event store's HTTP API (layer L3).
//!
//! This crate owns the `/api/v1/streams` surface of the control plane — append with an
//! expected version (header or field), read a stream, its version, `$all`, subscribe over SSE,
//! follow the head over SSE, delete, truncate, snapshots and subscriber checkpoints: the whole
//! `EventStore` contract, so a remote client (`flotilla-platform`) implements it over HTTP —
//! with RFC 9457 problem+json errors (409 for version conflicts, each with a `code` and the
//! error's data) and size limits, and the event store's Prometheus metrics
//! ([`metrics::Instrumented`] wraps any store). It owns no storage: it serves whatever
//! [`EventStore`] the binary (`flotilla-cli`) built from configuration, and it depends on no
//! backend and no other component.
//!
//! Wiring: `StoreApi::new(options, store)` then `.router()` merged into the control plane's
//! axum router; register metrics with [`metrics::Metrics::register`] and wrap the store with
//! [`metrics::Instrumented`] before handing it here so every caller is measured.

mod http;
pub mod metrics;
mod problem;

use std::sync::Arc;

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};
use flotilla_eventstore::EventStore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Limits of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Largest append body accepted, in bytes (413 beyond). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most events in one append (413 beyond). Default 1,000.
    pub max_events_per_append: usize,
    /// Largest `limit` a read may ask for (larger ones are capped). Default 1,000.
    pub max_read_limit: usize,
    /// Most subscriptions (`$all/subscribe` streams) open at once; further ones get 503 with
    /// `Retry-After` until one closes. Each holds a connection and a reader. Default 1,024;
    /// at most [`MAX_SUBSCRIBERS`].
    pub max_subscribers: usize,
}

/// The largest `max_subscribers` accepted: far beyond what one process can serve, and well
/// below the most permits a semaphore can hold.
pub const MAX_SUBSCRIBERS: usize = 1_000_000;

impl Default for Options {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_events_per_append: 1000,
            max_read_limit: 1000,
            max_subscribers: 1024,
        }
    }
}

/// Why the options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An option is out of range; the message names it.
    #[error("invalid event store API option: {0}")]
    InvalidOption(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(ErrorKind::InvalidInput)
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

impl Options {
    /// Checks every limit is at least 1, and `max_subscribers` at most [`MAX_SUBSCRIBERS`].
    pub fn validate(&self) -> Result<(), Error> {
        for (name, v) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_events_per_append", self.max_events_per_append),
            ("max_read_limit", self.max_read_limit),
            ("max_subscribers", self.max_subscribers),
        ] {
            if v == 0 {
                return Err(Error::InvalidOption(format!(
                    "{name} must be at least 1, got 0"
                )));
            }
        }
        if self.max_subscribers > MAX_SUBSCRIBERS {
            return Err(Error::InvalidOption(format!(
                "max_subscribers must be at most {MAX_SUBSCRIBERS}, got {}",
                self.max_subscribers
            )));
        }
        Ok(())
    }
}

/// The HTTP API over one store; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreApi {
    options: Arc<Options>,
    store: Arc<dyn EventStore>,
    streams_end: CancellationToken,
    subscribers: Arc<tokio::sync::Semaphore>,
}

impl StoreApi {
    /// Validates `options` and serves `store`.
    pub fn new(options: Options, store: Arc<dyn EventStore>) -> Result<Self, Error> {
        options.validate()?;
        let subscribers = Arc::new(tokio::sync::Semaphore::new(options.max_subscribers));
        Ok(Self {
            options: Arc::new(options),
            store,
            streams_end: CancellationToken::new(),
            subscribers,
        })
    }

    /// Ends open subscriptions (`$all/subscribe` SSE streams) when `token` is cancelled: give
    /// it the server's shutdown signal so a graceful shutdown does not wait for followers that
    /// would never disconnect on their own.
    pub fn end_streams_on(mut self, token: CancellationToken) -> Self {
        self.streams_end = token;
        self
    }

    /// The routes under `/api/v1/streams`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_eventstore::MemoryEventStore;

    #[test]
    fn too_many_subscribers_is_an_error_naming_the_option_not_a_panic() {
        let options = Options {
            max_subscribers: usize::MAX,
            ..Options::default()
        };
        let err = StoreApi::new(options, Arc::new(MemoryEventStore::new())).unwrap_err();
        assert!(err.to_string().contains("max_subscribers"), "{err}");
        let at_bound = Options {
            max_subscribers: MAX_SUBSCRIBERS,
            ..Options::default()
        };
        assert!(at_bound.validate().is_ok());
    }
}
