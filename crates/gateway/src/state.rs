//! State shared by every connection: the swappable routing table, the upstream client pool,
//! metrics and listener options.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cache::Cache;
use crate::config::ServerOptions;
use crate::metrics::Metrics;
use crate::table::RouteTable;
use crate::tls::{ServerTls, UpstreamClient};

/// What the request path reads; one per gateway.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current routing table; a reload swaps it atomically, in-flight requests keep the
    /// table they started with.
    /// Shared by every worker's copy of this state.
    pub table: Arc<ArcSwap<RouteTable>>,
    /// Pooled keep-alive HTTP/1.1 connections to upstreams without a `tls` table of their own;
    /// one pool per worker runtime (see [`Shared::for_worker`]).
    pub client: UpstreamClient,
    /// Per-route metrics.
    pub metrics: Metrics,
    /// Handles for requests no route matched (`route="_none"`).
    pub unmatched: crate::metrics::RouteMetrics,
    /// Listener options, fixed for the gateway's life.
    pub server: ServerOptions,
    /// The listener's TLS (its certificate reloads with the config); None = cleartext.
    pub tls: Option<ServerTls>,
    /// The response cache shared by every route that enables it; it outlives reloads.
    pub cache: Arc<Cache>,
}

impl Shared {
    /// Builds the shared state around a first table.
    pub(crate) fn new(
        table: RouteTable,
        server: ServerOptions,
        metrics: Metrics,
        tls: Option<ServerTls>,
        cache: Cache,
    ) -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
            client: crate::tls::plain_client(&server),
            unmatched: metrics.route("_none"),
            metrics,
            server,
            tls,
            cache: Arc::new(cache),
        }
    }

    /// A copy for one worker runtime: the same table, metrics, TLS and cache, but an upstream
    /// pool of its own, so a worker's requests only use connections its own runtime drives
    /// (no request crosses threads on its way to the upstream).
    pub(crate) fn for_worker(&self) -> Self {
        Self {
            table: self.table.clone(),
            client: crate::tls::plain_client(&self.server),
            metrics: self.metrics.clone(),
            unmatched: self.unmatched.clone(),
            server: self.server.clone(),
            tls: self.tls.clone(),
            cache: self.cache.clone(),
        }
    }
}
