//! The event bus's HTTP API (layer L3), under `/api/v1/bus`.
//!
//! This crate owns the HTTP surface non-Rust services use to publish and consume: publish in
//! CloudEvents structured mode (`application/cloudevents+json`), batch mode
//! (`application/cloudevents-batch+json`) and binary mode (`ce-*` headers), long-poll pull
//! with ack / nack / dead-letter, group declaration, topic and group listings, and the
//! dead-letter endpoints (list, show, replay, purge), and push subscriptions (webhooks with
//! the engine's retry/DLQ policy). Errors are RFC 9457 problem+json.
//!
//! It does not own delivery semantics or storage: everything goes through the
//! `flotilla_bus::Backend` it is given (chosen and built by the binary). The binary mounts
//! [`Broker::router`]; nothing else depends on this crate.

mod error;
mod publish;
mod push;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::Backend;
use serde::{Deserialize, Serialize};

pub use error::Error;
pub use push::PushOptions;

/// Configuration of the bus HTTP API (`[bus.http]` in `flotilla.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Largest accepted event, encoded, in bytes (default 1 MiB).
    pub max_event_bytes: usize,
    /// Largest accepted request body, in bytes (default 8 MiB; bounds batches).
    pub max_body_bytes: usize,
    /// Longest a pull may wait for events, in milliseconds (default 30 000).
    pub max_wait_ms: u64,
    /// Most events one pull returns (default 256).
    pub max_pull: usize,
    /// Push subscriptions, started by [`Broker::run`].
    pub push: Vec<PushOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_event_bytes: 1 << 20,
            max_body_bytes: 8 << 20,
            max_wait_ms: 30_000,
            max_pull: 256,
            push: Vec::new(),
        }
    }
}

impl Options {
    /// Refuses settings that cannot work, naming the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_event_bytes == 0 || self.max_event_bytes > self.max_body_bytes {
            return Err(Error::Config(format!(
                "max_event_bytes {} must be between 1 and max_body_bytes {}",
                self.max_event_bytes, self.max_body_bytes
            )));
        }
        if self.max_pull == 0 {
            return Err(Error::Config("max_pull 0 must be at least 1".into()));
        }
        Ok(())
    }

    fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// The bus HTTP API component: cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    backend: Arc<dyn Backend>,
    options: Arc<Options>,
    discovery: Option<Arc<dyn flotilla_discovery::Discovery>>,
}

impl Broker {
    /// A broker over `backend`; fails on invalid options.
    pub fn new(options: Options, backend: Arc<dyn Backend>) -> Result<Self, Error> {
        options.validate()?;
        Ok(Self {
            backend,
            options: Arc::new(options),
            discovery: None,
        })
    }

    /// Lets push subscriptions name a `service` instead of a `url`.
    pub fn with_discovery(mut self, discovery: Arc<dyn flotilla_discovery::Discovery>) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// The routes, to be merged into the control-plane router (they carry their
    /// `/api/v1/bus` prefix).
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Runs the push subscriptions until `shutdown` is cancelled; in-flight pushes finish
    /// and are settled before it returns. Fails at once if one cannot start.
    pub async fn run(&self, shutdown: tokio_util::sync::CancellationToken) -> Result<(), Error> {
        let bus = flotilla_bus::Bus::new(Arc::clone(&self.backend));
        let mut running = Vec::new();
        for p in &self.options.push {
            match push::start(&bus, p, self.discovery.as_ref(), &shutdown).await {
                Ok(sub) => running.push(sub),
                Err(e) => {
                    for sub in running {
                        sub.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        shutdown.cancelled().await;
        for sub in running {
            sub.join().await;
        }
        Ok(())
    }
}
