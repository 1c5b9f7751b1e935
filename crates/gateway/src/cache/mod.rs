//! The shared HTTP response cache (RFC 9111) in front of routes that enable it.
//!
//! It sits after authentication and rate limiting and before forwarding. [`policy`] holds the
//! RFC's rules as pure functions, [`key`] the primary and secondary keys, [`store`] the moka
//! store weighed by bytes, [`collapse`] request collapsing, and [`flow`] the request path
//! that ties them together. Time comes from a [`Clock`] so expiry is testable without
//! waiting.

mod body;
pub mod collapse;
pub mod conditional;
mod flow;
pub mod key;
mod location;
pub mod policy;
mod range;
mod status;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use flotilla_core::Clock;
use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, Response};

use crate::Error;
use crate::config::RouteCacheConfig;
use crate::metrics::CacheMetrics;
use crate::problem::{Body, full};

pub(crate) use flow::serve;
pub(crate) use location::related_targets;
pub use status::{CacheStatus, Forward};

use conditional::ClientConditions;
use key::{CacheMethod, PrimaryKey};
use policy::{Directives, Heuristics};
use store::{Entry, Stats, Store};

/// Sends a request head (bodyless) to the route's upstream: the proxy's forwarding path.
pub(crate) trait Origin: Clone + Send + Sync + 'static {
    /// One request to the origin, with the route's timeout, retries and breaker.
    fn fetch(&self, head: Parts) -> impl Future<Output = Result<Response<Body>, Error>> + Send;
}

/// The gateway-wide cache: the store, the requests in flight, counters and the clock.
#[derive(Debug)]
pub struct Cache {
    store: Store,
    in_flight: collapse::InFlight,
    clock: Arc<dyn Clock>,
    hits: AtomicU64,
    misses: AtomicU64,
    collapsed: AtomicU64,
}

impl Cache {
    /// An empty cache of at most `max_bytes`, reading time from `clock`.
    pub fn new(max_bytes: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: Store::new(max_bytes),
            in_flight: collapse::InFlight::default(),
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Sizes and counters.
    pub fn stats(&self) -> Stats {
        self.store
            .stats([&self.hits, &self.misses, &self.collapsed])
    }

    /// Drops stored responses: all, or those of `route`, or under the path `prefix` (at a
    /// segment boundary), or both conditions at once.
    pub fn purge(&self, route: Option<String>, prefix: Option<String>) {
        if route.is_none() && prefix.is_none() {
            return self.store.purge_all();
        }
        self.store.purge_if(move |k| {
            route.as_deref().is_none_or(|r| *k.route == *r)
                && prefix.as_deref().is_none_or(|p| under_prefix(k.path(), p))
        });
    }

    /// Drops everything stored for the named routes.
    pub(crate) fn purge_routes(&self, routes: Vec<String>) {
        self.store
            .purge_if(move |k| routes.iter().any(|r| **r == *k.route));
    }

    /// RFC 9111 §4.4: an unsafe request that succeeded invalidates what every cached route
    /// stored for its target.
    pub(crate) fn invalidate<'a>(
        &self,
        routes: impl Iterator<Item = &'a str>,
        host: &str,
        target: &str,
    ) {
        for route in routes {
            for method in [CacheMethod::Get, CacheMethod::Head] {
                self.store.remove(&PrimaryKey {
                    route: route.into(),
                    method,
                    host: host.to_owned(),
                    target: target.to_owned(),
                });
            }
        }
    }

    /// The usable stored variant for `req`; a HEAD may be answered from a stored GET.
    fn find(&self, req: &Lookup) -> Option<(PrimaryKey, Arc<Entry>)> {
        let own = self.store.find(&req.key, &req.head.headers);
        let found = own.map(|e| (req.key.clone(), e));
        match (found, req.key.method) {
            (None, CacheMethod::Head) => {
                let get = req.key.with_method(CacheMethod::Get);
                self.store.find(&get, &req.head.headers).map(|e| (get, e))
            }
            (found, _) => found,
        }
    }
}

/// The `Cache-Status` of a request the cache let through to the origin for `why`.
pub(crate) fn forwarded_status(why: Forward) -> http::HeaderValue {
    CacheStatus::Forwarded {
        why,
        status: None,
        stored: false,
    }
    .header()
}

/// Whether `path` is `prefix` or below it.
fn under_prefix(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    path == p
        || path
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// One route's cache settings, compiled from `routes[].cache`.
#[derive(Debug)]
pub struct RouteCache {
    max_entry_bytes: u64,
    max_stale: Duration,
    heuristics: Heuristics,
    metrics: CacheMetrics,
}

impl RouteCache {
    /// Compiles `cfg` (at config key `key`); `None` when caching is off.
    pub fn build(
        cfg: &RouteCacheConfig,
        key: &str,
        metrics: CacheMetrics,
    ) -> Result<Option<Self>, Error> {
        if !cfg.enabled {
            return Ok(None);
        }
        if cfg.max_entry_bytes == 0 || cfg.max_entry_bytes > u64::from(u32::MAX) {
            return Err(Error::config(
                format!("{key}.max_entry_bytes"),
                "must be between 1 and 4294967295",
            ));
        }
        Ok(Some(Self {
            max_entry_bytes: cfg.max_entry_bytes,
            max_stale: cfg.max_stale,
            heuristics: Heuristics {
                default_ttl: cfg.default_ttl,
                max_heuristic: cfg.max_heuristic_ttl,
            },
            metrics,
        }))
    }
}

/// A request the cache may answer: its key, the head to send upstream, and what the client
/// asked of the cache.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    key: PrimaryKey,
    head: Parts,
    directives: Directives,
    conditions: ClientConditions,
    /// A GET's `Range`: served from a stored `200`, or the request goes through untouched.
    range: Option<http::HeaderValue>,
    authenticated: bool,
}

impl Lookup {
    /// Whether the cache handles the upstream request `head`: GET or HEAD, without a body,
    /// `If-Range`, or a precondition other than the two the cache evaluates itself.
    pub(crate) fn applies(headers: &HeaderMap, method: &Method) -> bool {
        CacheMethod::of(method).is_some() && !bypassed(headers)
    }

    /// A lookup for the upstream request `head` (one that [`Lookup::applies`] to).
    pub(crate) fn new(
        route: &str,
        host: &str,
        target: String,
        mut head: Parts,
        route_authenticates: bool,
    ) -> Self {
        let method = CacheMethod::of(&head.method).unwrap_or(CacheMethod::Get);
        let conditions = ClientConditions::take(&mut head.headers);
        // RFC 9110 §14.2: GET is the only method range requests are defined for.
        let range = (method == CacheMethod::Get)
            .then(|| head.headers.get(header::RANGE).cloned())
            .flatten();
        Self {
            key: PrimaryKey {
                route: route.into(),
                method,
                host: host.to_owned(),
                target,
            },
            directives: Directives::parse(&head.headers),
            // A cookie identifies the client as much as `Authorization` does (§3.5).
            authenticated: route_authenticates
                || head.headers.contains_key(header::AUTHORIZATION)
                || head.headers.contains_key(header::COOKIE),
            head,
            conditions,
            range,
        }
    }

    fn is_head(&self) -> bool {
        self.head.method == Method::HEAD
    }
}

/// Requests the cache passes through untouched.
fn bypassed(h: &HeaderMap) -> bool {
    [
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ]
    .iter()
    .any(|n| h.get(n).is_some_and(|v| v.as_bytes() != b"0"))
}

/// A response built from a stored entry; `age` is sent when the origin did not just
/// produce or validate it (RFC 9111 §5.1).
fn render(entry: &Entry, head_only: bool, age: Option<Duration>) -> Response<Body> {
    let mut resp = Response::new(if head_only {
        full(bytes::Bytes::new())
    } else {
        full(entry.body.clone())
    });
    *resp.status_mut() = entry.status;
    *resp.headers_mut() = entry.headers.clone();
    if let Some(a) = age {
        resp.headers_mut()
            .insert(header::AGE, http::HeaderValue::from(a.as_secs()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::under_prefix;

    #[test]
    fn purge_prefixes_match_at_segment_boundaries() {
        assert!(under_prefix("/static/a.css", "/static"));
        assert!(under_prefix("/static", "/static/"));
        assert!(under_prefix("/static/a", "/static/"));
        assert!(!under_prefix("/staticx", "/static"));
        assert!(under_prefix("/anything", "/"));
    }
}
