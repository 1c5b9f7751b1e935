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
    pub table: ArcSwap<RouteTable>,
    /// Pooled keep-alive HTTP/1.1 connections to upstreams without a `tls` table of their own.
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
            table: ArcSwap::from_pointee(table),
            client: crate::tls::plain_client(&server),
            unmatched: metrics.route("_none"),
            metrics,
            server,
            tls,
            cache: Arc::new(cache),
        }
    }
}
