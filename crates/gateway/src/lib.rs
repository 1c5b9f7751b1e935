//! Flotilla's API gateway (layer L3): a config-driven reverse proxy on hyper.
//!
//! It owns request routing (path templates, prefixes, host/method/header matchers with a
//! deterministic precedence), path normalisation, streaming proxying with RFC 9110 header
//! handling, per-route policies (timeouts, retries, a per-instance breaker, GCRA rate limits,
//! body limits, JWT (PEM or JWKS keys) / API-key auth, CORS, header rewrites), a shared
//! RFC 9111 response cache ([`cache`]), TLS on the listener (ALPN h2 / http/1.1) and to
//! upstreams, metrics, hot reload and an admin API.
//! It resolves upstreams only through the [`flotilla_discovery::Discovery`] contract, never
//! through the registry crate or a backend. `flotilla-cli` wires it: build a [`Gateway`] from
//! [`GatewayOptions`] and an `Arc<dyn Discovery>`, call [`Gateway::serve`] on a listener,
//! [`Gateway::run`] for background work, mount [`Gateway::admin_router`] and register
//! [`Gateway::register_metrics`]. Rate limits stay in memory unless the wiring hands
//! [`GatewayBuilder::shared_rate_limiter`] a limiter shared by every replica (Redis).

mod accept;
mod admin;
pub mod auth;
mod authority;
mod builder;
pub mod cache;
pub mod config;
pub mod cors;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
mod jwks;
pub mod matcher;
pub mod metrics;
pub mod path;
mod problem;
mod proxy;
pub mod ratelimit;
mod reload;
mod server;
mod state;
pub mod table;
pub mod template;
mod tls;
pub mod transform;
mod upgrade;
pub mod upstream;
mod upstream_pool;
mod workers;

use std::path::Path;
use std::sync::Arc;

use flotilla_core::Clock;
use flotilla_discovery::Discovery;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use builder::GatewayBuilder;
pub use config::GatewayOptions;
pub use error::Error;
pub use problem::Body;
pub use workers::WorkerListeners;

use state::Shared;
use table::RouteTable;

/// A running gateway's handle: cheap to clone, shared by the listener, the admin API and
/// whoever triggers reloads.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    discovery: Arc<dyn Discovery>,
    /// The limiter routes with `rate_limit.shared = true` ask, if the wiring gave one.
    rate_limits: Option<Arc<ratelimit::SharedLimits>>,
}

impl Gateway {
    /// Validates `opts` and builds the gateway; the error names the first bad key.
    pub fn new(opts: GatewayOptions, discovery: Arc<dyn Discovery>) -> Result<Self, Error> {
        Self::builder(opts, discovery).build()
    }

    /// Like [`Gateway::new`], with the wall clock the response cache reads (ages, expiry);
    /// tests pass a [`flotilla_core::ManualClock`] to move time by hand.
    pub fn with_clock(
        opts: GatewayOptions,
        discovery: Arc<dyn Discovery>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        Self::builder(opts, discovery).clock(clock).build()
    }

    /// A builder, for what configuration text cannot carry (a clock, a shared rate limiter).
    pub fn builder(opts: GatewayOptions, discovery: Arc<dyn Discovery>) -> GatewayBuilder {
        GatewayBuilder::new(opts, discovery)
    }

    fn build(
        opts: GatewayOptions,
        discovery: Arc<dyn Discovery>,
        clock: Arc<dyn Clock>,
        rate_limits: Option<Arc<ratelimit::SharedLimits>>,
    ) -> Result<Self, Error> {
        let metrics = metrics::Metrics::default();
        let mut table = RouteTable::build(&opts, discovery.as_ref(), &metrics)?;
        ratelimit::attach_shared(&mut table, rate_limits.as_ref())?;
        let tls = opts
            .server
            .tls
            .as_ref()
            .map(tls::ServerTls::build)
            .transpose()?;
        if opts.cache.max_bytes == 0 {
            return Err(Error::config("cache.max_bytes", "must be at least 1"));
        }
        let cache = cache::Cache::new(opts.cache.max_bytes, clock);
        Ok(Self {
            shared: Arc::new(Shared::new(table, opts.server, metrics, tls, cache)),
            discovery,
            rate_limits,
        })
    }

    /// Swaps in a new routing configuration (routes, upstreams, auth, limits). Requests in
    /// flight finish on the table they started with; none fail because of the swap. An invalid
    /// config is refused and the current one keeps serving. The `[server]` section is read
    /// only at start (listener limits change with a restart), except the TLS certificate and
    /// key, which are re-read from `server.tls` so a renewed certificate needs no restart.
    pub fn reload(&self, opts: GatewayOptions) -> Result<(), Error> {
        let current = self.shared.table.load_full();
        let mut table = RouteTable::build_after(
            &opts,
            self.discovery.as_ref(),
            &self.shared.metrics,
            Some(&current),
        )?;
        ratelimit::attach_shared(&mut table, self.rate_limits.as_ref())?;
        match (&self.shared.tls, &opts.server.tls) {
            (Some(current), Some(cfg)) => current.reload(cfg)?,
            (None, None) => {}
            _ => tracing::warn!("turning TLS on or off needs a restart; kept as started"),
        }
        let old = self.shared.table.swap(Arc::new(table));
        self.purge_changed_routes(&old);
        tracing::info!("gateway configuration reloaded");
        Ok(())
    }

    /// Drops what the cache stored for routes that a reload removed or changed (a new
    /// rewrite or upstream may answer differently); unchanged routes keep their entries.
    fn purge_changed_routes(&self, old: &RouteTable) {
        let new = self.shared.table.load();
        let as_json = |r: &table::Route| serde_json::to_value(&r.config).ok();
        let kept = |o: &table::Route| {
            new.routes
                .iter()
                .any(|n| n.name == o.name && n.cache.is_some() && as_json(n) == as_json(o))
        };
        let changed: Vec<String> = (old.routes.iter())
            .filter(|o| o.cache.is_some() && !kept(o))
            .map(|o| o.name.clone())
            .collect();
        if !changed.is_empty() {
            self.shared.cache.purge_routes(changed);
        }
    }

    /// Reads a TOML file and [`reload`](Self::reload)s it. [`Gateway::watch_config`] calls it
    /// on SIGHUP and when the file changes.
    pub fn reload_file(&self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config("file", format!("cannot read {}: {e}", path.display())))?;
        self.reload(GatewayOptions::from_toml(&text)?)
    }

    /// Serves client traffic on `listener` until `shutdown`, then drains in-flight requests.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let permits = server::connection_permits(&self.shared.server);
        server::serve(self.shared.clone(), listener, shutdown, permits)
            .await
            .map_err(|e| Error::Internal(format!("listener failed: {e}")))
    }

    /// Serves client traffic on worker threads until `shutdown`, then drains every worker:
    /// one current-thread runtime per socket of `listeners`, each accepting on its own
    /// `SO_REUSEPORT` socket and keeping its own upstream connections, so a request never
    /// leaves the thread that accepted its connection. Reloads, metrics, the cache and
    /// `max_connections` are shared by all workers. Call it from any runtime; the workers do
    /// not use the caller's.
    pub async fn serve_workers(
        &self,
        listeners: WorkerListeners,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        workers::serve(&self.shared, listeners, shutdown).await
    }

    /// Background upkeep until `shutdown`: drops idle rate-limiter state so memory stays
    /// bounded by active callers.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(ratelimit::SHRINK_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let table = self.shared.table.load();
                    table.routes.iter().filter_map(|r| r.limiter.as_ref()).for_each(|l| l.shrink());
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// The admin API router; mount it under `/api/v1/gateway`.
    pub fn admin_router(&self) -> axum::Router {
        admin::router(self.clone())
    }

    /// Registers the gateway's metrics (prefixed `gateway_`) in `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
        if let Some(limits) = &self.rate_limits {
            limits.register(registry);
        }
    }
}
