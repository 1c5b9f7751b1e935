//! State shared by every connection: the swappable routing table, the upstream client pool,
//! metrics and listener options.

use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::ServerOptions;
use crate::metrics::Metrics;
use crate::problem::Body;
use crate::table::RouteTable;

/// What the request path reads; one per gateway.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current routing table; a reload swaps it atomically, in-flight requests keep the
    /// table they started with.
    pub table: ArcSwap<RouteTable>,
    /// Pooled keep-alive HTTP/1.1 connections to upstreams.
    pub client: Client<HttpConnector, Body>,
    /// Per-route metrics.
    pub metrics: Metrics,
    /// Handles for requests no route matched (`route="_none"`).
    pub unmatched: crate::metrics::RouteMetrics,
    /// Listener options, fixed for the gateway's life.
    pub server: ServerOptions,
}

impl Shared {
    /// Builds the shared state around a first table.
    pub(crate) fn new(table: RouteTable, server: ServerOptions, metrics: Metrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(server.upstream_idle_timeout)
            .pool_max_idle_per_host(server.upstream_pool_idle_per_host)
            .build(connector);
        Self {
            table: ArcSwap::from_pointee(table),
            client,
            unmatched: metrics.route("_none"),
            metrics,
            server,
        }
    }
}
