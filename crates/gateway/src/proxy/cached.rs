//! The request path's side for cached routes: the cache's target, the [`cache::Origin`]
//! that forwards on the cache's behalf (owned, so a background revalidation can outlive the
//! client's request), and invalidation after unsafe methods.

use std::sync::Arc;

use http::{Method, Request, Response, Uri};

use super::{Ctx, UpstreamBody, boxed, empty, forward};
use crate::Error;
use crate::cache;
use crate::path::NormalPath;
use crate::problem::Body;
use crate::state::Shared;
use crate::table::{Route, RouteTable};

/// The normalised path and the query as the client sent them: the cache's target.
pub(super) fn client_target(path: &NormalPath, uri: &Uri) -> String {
    let mut t = path.encoded();
    if let Some(q) = uri.query() {
        t.push('?');
        t.push_str(q);
    }
    t
}

/// Sends a request on a cached route: through the cache when it may answer, otherwise
/// straight to the origin, marked with why it bypassed the cache.
pub(super) async fn through_cache(
    origin: Forwarder,
    (rc, host, target, authenticated): (&Arc<cache::RouteCache>, &str, String, bool),
    req: Request<UpstreamBody>,
) -> Result<Response<Body>, Error> {
    let route = origin.route()?;
    if origin.ctx.upgrade || !cache::Lookup::applies(req.headers(), req.method()) {
        let why = match *req.method() {
            Method::GET | Method::HEAD => cache::Forward::Bypass,
            _ => cache::Forward::Method,
        };
        let mut resp = boxed(forward(&origin.shared, route, &origin.ctx, req).await?);
        // RFC 9211: an upstream cache's entry stays first, ours is appended.
        resp.headers_mut()
            .append("cache-status", cache::forwarded_status(why));
        return Ok(resp);
    }
    let (head, _empty) = req.into_parts();
    let lookup = cache::Lookup::new(&route.name, host, target, head, authenticated);
    let cache = origin.shared.cache.clone();
    cache::serve(&cache, rc, lookup, origin).await
}

/// Owns what forwarding needs, so a background revalidation can outlive the client request.
#[derive(Clone)]
pub(super) struct Forwarder {
    shared: Arc<Shared>,
    table: Arc<RouteTable>,
    index: usize,
    ctx: Ctx,
}

pub(super) fn forwarder(
    shared: &Arc<Shared>,
    table: &Arc<RouteTable>,
    route: &Route,
    ctx: &Ctx,
) -> Result<Forwarder, Error> {
    let index = table
        .routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .ok_or_else(|| Error::Internal("route is not in its table".into()))?;
    Ok(Forwarder {
        shared: shared.clone(),
        table: table.clone(),
        index,
        ctx: ctx.clone(),
    })
}

impl Forwarder {
    fn route(&self) -> Result<&Route, Error> {
        (self.table.routes.get(self.index))
            .ok_or_else(|| Error::Internal("route index out of its table".into()))
    }
}

impl cache::Origin for Forwarder {
    async fn fetch(&self, head: http::request::Parts) -> Result<Response<Body>, Error> {
        let req = Request::from_parts(head, empty());
        Ok(boxed(
            forward(&self.shared, self.route()?, &self.ctx, req).await?,
        ))
    }
}

/// RFC 9111 §4.4: an unsafe request the upstream did not refuse invalidates what every cached
/// route stored for its target, and for the same-origin targets its response names in
/// `Location` and `Content-Location`.
pub(super) fn invalidate_after(
    shared: &Shared,
    table: &RouteTable,
    host: &str,
    target: &str,
    resp: &Response<Body>,
) {
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        return;
    }
    let related = cache::related_targets(host, target, resp.headers());
    for t in std::iter::once(target).chain(related.iter().map(String::as_str)) {
        let cached = table.routes.iter().filter(|r| r.cache.is_some());
        (shared.cache).invalidate(cached.map(|r| r.name.as_str()), host, t);
    }
}
