//! The event bus's HTTP API (layer L3), under `/api/v1/bus`.
//!
//! This crate owns the HTTP surface non-Rust services use to publish and consume: publish in
//! CloudEvents structured mode (`application/cloudevents+json`), batch mode
//! (`application/cloudevents-batch+json`) and binary mode (`ce-*` headers), long-poll pull
//! with ack / nack / dead-letter, group declaration, topic and group listings, and the
//! dead-letter endpoints (list, show, replay, purge), and push subscriptions (webhooks with
//! the engine's retry/DLQ policy), and the consumer-lag gauges. Errors are RFC 9457
//! problem+json, and no 5xx carries backend error text.
//!
//! It does not own delivery semantics or storage: everything goes through the
//! `flotilla_bus::Backend` it is given (chosen and built by the binary). The binary mounts
//! [`Broker::router`]; nothing else depends on this crate.

mod error;
mod leases;
mod metrics;
mod problem;
mod publish;
mod push;
mod routes;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::Backend;
use serde::{Deserialize, Serialize};

pub use error::Error;
pub use push::PushOptions;

#[cfg(feature = "dial")]
pub use flotilla_dial::{Dialer, Stream};

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
    /// Most SSE pull streams open at once (default 64); beyond, 503 with `Retry-After`.
    pub max_sse_streams: usize,
    /// Highest `max_in_flight` an SSE stream may ask for (default 256).
    pub max_in_flight: usize,
    /// How often the consumer-lag gauges are refreshed, in milliseconds (default 5 000).
    pub lag_refresh_ms: u64,
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
            max_sse_streams: 64,
            max_in_flight: 256,
            lag_refresh_ms: 5_000,
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
        for (name, value) in [
            ("max_pull", self.max_pull),
            ("max_sse_streams", self.max_sse_streams),
            ("max_in_flight", self.max_in_flight),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} 0 must be at least 1")));
            }
        }
        if self.lag_refresh_ms == 0 {
            return Err(Error::Config("lag_refresh_ms 0 must be at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

/// The bus HTTP API component: cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    backend: Arc<dyn Backend>,
    options: Arc<Options>,
    discovery: Option<Arc<dyn flotilla_discovery::Discovery>>,
    /// How push subscriptions connect to their receivers.
    connector: flotilla_dial::Connector,
    /// One permit per SSE stream that may open.
    streams: Arc<tokio::sync::Semaphore>,
    /// Deliveries out on SSE streams, holding their in-flight slots.
    leases: Arc<leases::Leases>,
    lag: metrics::LagMetrics,
}

impl Broker {
    /// A broker over `backend`; fails on invalid options.
    pub fn new(options: Options, backend: Arc<dyn Backend>) -> Result<Self, Error> {
        options.validate()?;
        Ok(Self {
            backend,
            streams: Arc::new(tokio::sync::Semaphore::new(options.max_sse_streams)),
            options: Arc::new(options),
            discovery: None,
            connector: flotilla_dial::Connector::default(),
            leases: Arc::default(),
            lag: metrics::LagMetrics::default(),
        })
    }

    /// Lets push subscriptions name a `service` instead of a `url`.
    pub fn with_discovery(mut self, discovery: Arc<dyn flotilla_discovery::Discovery>) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// Push subscriptions reach their receivers through `dialer` instead of TCP: the same
    /// broker, over a simulated network in tests. The receiver URL's host and port go to it.
    #[cfg(feature = "dial")]
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.connector = flotilla_dial::Connector::Dial(dialer);
        self
    }

    /// The routes, to be merged into the control-plane router (they carry their
    /// `/api/v1/bus` prefix).
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Registers `flotilla_bus_consumer_lag{group}` and `flotilla_bus_dead_letters{group}`;
    /// [`run`](Self::run) then refreshes them every `lag_refresh_ms`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.lag.register(registry);
    }

    /// Runs the push subscriptions and the consumer-lag refresh until `shutdown` is
    /// cancelled; in-flight pushes finish and are settled before it returns. Fails at once if
    /// a push subscription cannot start.
    pub async fn run(&self, shutdown: tokio_util::sync::CancellationToken) -> Result<(), Error> {
        let (lag, backend) = (self.lag.clone(), Arc::clone(&self.backend));
        let every = Duration::from_millis(self.options.lag_refresh_ms);
        let refresh = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { lag.run(backend, every, shutdown).await }
        });
        let pushed = self.run_push(&shutdown).await;
        if pushed.is_err() {
            refresh.abort();
        } else if let Err(e) = refresh.await {
            tracing::error!(error = %e, "the consumer-lag refresh task failed");
        }
        pushed
    }

    async fn run_push(&self, shutdown: &tokio_util::sync::CancellationToken) -> Result<(), Error> {
        let bus = flotilla_bus::Bus::new(Arc::clone(&self.backend));
        let mut running = Vec::new();
        for p in &self.options.push {
            match push::start(
                &bus,
                p,
                self.discovery.as_ref(),
                self.connector.clone(),
                shutdown,
            )
            .await
            {
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
