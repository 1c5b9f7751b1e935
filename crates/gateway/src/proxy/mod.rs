//! The request path, split by phase: admit (ids, limits, normalisation), route, guard (auth,
//! rate limit, body limit), forward (instance, breaker, timeout, retry), respond (headers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use flotilla_core::{RequestId, TraceContext};
use flotilla_telemetry::ExportedSpan;
use flotilla_telemetry::headers as trace_headers;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;

use crate::Error;
use crate::auth::Identity;
use crate::cache;
use crate::cors::Cors;
use crate::headers::{ClientInfo, add_forwarding, strip_hop_by_hop};
use crate::matcher::{RequestView, host_of, request_authority};
use crate::path::NormalPath;
use crate::problem::{Body, RequestIds, problem, problem_status};
use crate::ratelimit::Allowed;
use crate::state::Shared;
use crate::table::{Route, RouteTable};
use crate::template::Params;
use crate::upgrade;
use crate::upstream::{Outcome, Target};
use crate::upstream_pool::{PoolError, PooledBody};

mod cached;
mod spans;

/// Per-request context carried across phases.
#[derive(Clone)]
struct Ctx {
    request_id: RequestId,
    /// This hop's trace context: its span's when spans are exported.
    trace: TraceContext,
    /// This hop's exported span (none unless sampled); upstream attempts are its children.
    span: ExportedSpan,
    peer: SocketAddr,
    started: Instant,
    upgrade: bool,
}

impl Ctx {
    fn ids(&self) -> RequestIds<'_> {
        RequestIds {
            request_id: self.request_id.as_str(),
            trace: &self.trace.parent,
        }
    }
}

/// Handles one client request; never fails (errors become problem+json responses).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    // A duplicated or invalid traceparent starts a new trace (W3C trace-context §4.3).
    let incoming = trace_headers::extract(req.headers());
    // Sampled before any span exists: an unsampled request builds none.
    let hop = flotilla_telemetry::Hop::begin(incoming.as_ref());
    let (span, trace) = hop.start(|| spans::request(&req));
    let ctx = Ctx {
        request_id: header_str(&req, "x-request-id")
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate),
        trace,
        span,
        peer,
        started: Instant::now(),
        upgrade: is_upgrade(&req),
    };
    let table = shared.table.load_full();
    let (route, resp) = admit(&shared, &table, &ctx, req).await;
    let status = resp.status().as_u16();
    let seconds = ctx.started.elapsed().as_secs_f64();
    let exemplar = flotilla_telemetry::metrics::exemplar(&ctx.trace.parent);
    let route_name = match route {
        Some(r) => {
            r.metrics.observe(status, seconds, exemplar);
            r.name.as_str()
        }
        None => {
            shared.unmatched.observe(status, seconds, exemplar);
            "_none"
        }
    };
    spans::record_response(&ctx.span, route.map(|r| r.name.as_str()), status);
    tracing::info!(
        target: "flotilla_gateway::access",
        request_id = %ctx.request_id, peer = %ctx.peer, route = %route_name, status,
        micros = ctx.started.elapsed().as_micros() as u64,
    );
    resp
}

async fn admit<'t>(
    shared: &Arc<Shared>,
    table: &'t Arc<RouteTable>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> (Option<&'t Route>, Response<Body>) {
    let none = || None;
    if uri_len(req.uri()) > shared.server.max_uri_bytes {
        return (none(), uri_too_long(ctx));
    }
    if headers_over_limits(req.headers(), &shared.server) {
        return (none(), head_too_large(ctx));
    }
    let path = match NormalPath::parse(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return (none(), error_response(ctx, &e)),
    };
    let authority = match crate::authority::validated(req.version(), req.uri(), req.headers()) {
        Ok(a) => a,
        Err(e) => return (none(), error_response(ctx, &e)),
    };
    let view = RequestView {
        method: req.method(),
        host: host_of(&authority),
        headers: req.headers(),
        path: &path,
    };
    let Some((route, params)) = find_route(table, &view) else {
        return (
            none(),
            error_response(ctx, &Error::NoRoute(req.uri().path().to_owned())),
        );
    };
    // Preflights are answered here, before auth: browsers send them without credentials.
    let origin = route
        .cors
        .as_ref()
        .and_then(|_| req.headers().get(header::ORIGIN).cloned());
    if let Some(cors) = route.cors.as_ref().filter(|_| Cors::is_preflight(&req)) {
        return (Some(route), cors.preflight(origin.as_ref()));
    }
    let refused = refuse_unlisted_upgrade(ctx, req.headers(), route);
    let ctx = refused.as_ref().unwrap_or(ctx);
    let matched = Matched {
        route,
        path: &path,
        params: &params,
        authority: &authority,
    };
    let mut resp = match guard_and_forward(shared, table, &matched, ctx, req).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = error_response(ctx, &e);
            if let (Error::RateLimited { retry_after_secs }, Some(l)) = (&e, &route.limiter) {
                route.metrics.rate_limited.inc();
                resp.headers_mut()
                    .extend(l.refusal_headers(*retry_after_secs));
            }
            if let Error::NotCached = e {
                resp.headers_mut().insert(
                    "cache-status",
                    cache::CacheStatus::OnlyIfCachedMiss.header(),
                );
            }
            resp
        }
    };
    if let Some(cors) = &route.cors {
        cors.decorate(origin.as_ref(), resp.headers_mut());
    }
    (Some(route), resp)
}

/// The context to go on with when the client asks to upgrade to a protocol the route does not
/// allow: the request is then forwarded as a plain one (`strip_hop_by_hop` drops `Upgrade`).
fn refuse_unlisted_upgrade(ctx: &Ctx, headers: &http::HeaderMap, route: &Route) -> Option<Ctx> {
    let refused = ctx.upgrade && !upgrade::allowed(headers, &route.config.upgrade_protocols);
    refused.then(|| Ctx {
        upgrade: false,
        ..ctx.clone()
    })
}

/// The matching route. A CORS preflight is matched with the method it asks about, so it is
/// answered by the route that will serve the actual request (even one limited to `GET`).
fn find_route<'t>(table: &'t RouteTable, view: &RequestView<'_>) -> Option<(&'t Route, Params)> {
    if let Some(actual) = Cors::preflight_method(view.method, view.headers) {
        let as_actual = RequestView {
            method: &actual,
            host: view.host,
            headers: view.headers,
            path: view.path,
        };
        if let Some(found) = table.find(&as_actual).filter(|(r, _)| r.cors.is_some()) {
            return Some(found);
        }
    }
    table.find(view)
}

/// The route a request matched, and what it was matched on.
struct Matched<'a> {
    route: &'a Route,
    path: &'a NormalPath,
    params: &'a Params,
    /// The lowercase request authority (`host[:port]`): the cache keys on it.
    authority: &'a str,
}

async fn guard_and_forward(
    shared: &Arc<Shared>,
    table: &Arc<RouteTable>,
    m: &Matched<'_>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let route = m.route;
    let id = match &route.auth {
        Some(a) => a.authenticate(req.headers()).await?,
        None => Identity::default(),
    };
    let allowed = match &route.limiter {
        Some(l) => l.check(ctx.peer.ip(), req.headers(), &id).await?,
        None => None,
    };
    if let (Some(limit), Some(len)) = (route.max_body, content_length(&req)?)
        && len > limit
    {
        return Err(Error::BodyTooLarge(limit));
    }
    let unsafe_method = !is_safe(req.method());
    let head_only = req.method() == Method::HEAD;
    // Only the cache needs the target: skip the allocation on plain routes.
    let target =
        (route.cache.is_some() || unsafe_method).then(|| cached::client_target(m.path, req.uri()));
    // Built once: the same value goes upstream and back to the client.
    let request_id = HeaderValue::from_str(ctx.request_id.as_str()).ok();
    let mut upstream_req =
        build_upstream_request(shared, route, ctx, req, m, &id, request_id.clone())?;
    if route.transform.is_some() {
        // A transform reads the whole JSON document, so ask the upstream for all of it,
        // unencoded: a range would return a slice that cannot be transformed.
        let headers = upstream_req.headers_mut();
        for h in [header::ACCEPT_ENCODING, header::RANGE, header::IF_RANGE] {
            headers.remove(h);
        }
    }
    let resp = match (&route.cache, &target) {
        (Some(rc), Some(t)) => {
            let origin = cached::forwarder(shared, table, route, ctx)?;
            let args = (rc, m.authority, t.clone(), route.auth.is_some());
            cached::through_cache(origin, args, upstream_req).await?
        }
        _ => boxed(forward(shared, route, ctx, upstream_req).await?),
    };
    if let (true, Some(t)) = (unsafe_method, &target) {
        cached::invalidate_after(shared, table, m.authority, t, &resp);
    }
    let resp = match &route.transform {
        Some(t) => crate::transform::apply_to_response(t, head_only, resp).await?,
        None => resp,
    };
    Ok(respond(route, request_id, resp, allowed))
}

fn boxed(resp: Response<PooledBody>) -> Response<Body> {
    resp.map(BodyExt::boxed)
}

fn content_length(req: &Request<Incoming>) -> Result<Option<u64>, Error> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| Error::BadRequest("malformed Content-Length".into())),
    }
}

fn build_upstream_request(
    shared: &Shared,
    route: &Route,
    ctx: &Ctx,
    mut req: Request<Incoming>,
    m: &Matched<'_>,
    id: &Identity,
    request_id: Option<HeaderValue>,
) -> Result<Request<UpstreamBody>, Error> {
    let pq = upstream_target(route, m, req.uri())?;
    let bodyless = has_no_body(&req);
    let over_tls = req.extensions().get::<crate::server::OverTls>().is_some();
    let on_upgrade = ctx.upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    // The upstream is told the authority the request was routed (and cached) by, never a
    // different `Host` line sent beside an absolute-form target.
    let client_host = upstream_host(&parts.uri, headers);
    headers.remove(header::HOST);
    strip_hop_by_hop(headers, ctx.upgrade);
    let client = ClientInfo {
        peer: ctx.peer,
        proto: if over_tls { "https" } else { "http" },
        host: client_host.as_ref(),
        trusted: shared.server.trust_forwarded_headers,
    };
    add_forwarding(headers, client, parts.version, &shared.server.via_name);
    if let Some(v) = request_id {
        headers.insert(X_REQUEST_ID, v);
    }
    trace_headers::inject(headers, &ctx.trace);
    for h in route.identity_headers.iter() {
        headers.remove(h);
    }
    if let Some(a) = &route.auth {
        a.forward(id, headers);
    }
    route.request_headers.apply(headers);
    if let Some(h) = client_host {
        headers.insert(header::HOST, h);
    }
    let body = body.map_err(ClientBodyError);
    let body = match route.max_body {
        Some(limit) => Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed(),
        None => body.map_err(Into::into).boxed(),
    };
    let mut out = Request::from_parts(parts, body);
    *out.version_mut() = http::Version::HTTP_11;
    out.extensions_mut().insert(PathAndQuery(pq, bodyless));
    if let Some(u) = on_upgrade {
        out.extensions_mut()
            .insert(ClientUpgrade(Arc::new(std::sync::Mutex::new(Some(u)))));
    }
    Ok(out)
}

/// The body sent upstream.
type UpstreamBody = Body;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The rewritten target, and whether the client sent no body (so a retry loses nothing).
#[derive(Clone)]
struct PathAndQuery(http::uri::PathAndQuery, bool);

/// The path and query sent upstream: the route's rewrite of the path, then the client's query.
/// Built once per request as shared bytes, so each attempt's URI reuses them without a copy.
fn upstream_target(
    route: &Route,
    m: &Matched<'_>,
    uri: &Uri,
) -> Result<http::uri::PathAndQuery, Error> {
    let mut pq = route.rewrite.apply(m.path, m.params);
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(pq))
        .map_err(|e| Error::Internal(format!("cannot build upstream URI: {e}")))
}

/// The `Host` sent upstream, [`request_authority`]: the client's own header value when it is
/// that already (no absolute-form target, visible ASCII without upper case or spaces — the
/// usual case), so nothing is copied; else the authority built anew.
fn upstream_host(uri: &Uri, headers: &http::HeaderMap) -> Option<HeaderValue> {
    let canonical = |v: &HeaderValue| {
        v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    };
    match headers.get(header::HOST) {
        Some(h) if uri.authority().is_none() && !h.is_empty() && canonical(h) => Some(h.clone()),
        _ => request_authority(uri, headers).and_then(|a| HeaderValue::from_str(&a).ok()),
    }
}

/// The client side of an upgrade, carried to the point where the upstream answers 101.
#[derive(Clone)]
struct ClientUpgrade(Arc<std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>>);

async fn forward(
    shared: &Shared,
    route: &Route,
    ctx: &Ctx,
    mut req: Request<UpstreamBody>,
) -> Result<Response<PooledBody>, Error> {
    // Consistent hashing keeps a client on one instance.
    let octets = match ctx.peer.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let key: &[u8] = &octets;
    let PathAndQuery(pq, bodyless) =
        req.extensions_mut()
            .remove::<PathAndQuery>()
            .unwrap_or(PathAndQuery(
                http::uri::PathAndQuery::from_static("/"),
                false,
            ));
    let client_upgrade = req.extensions_mut().remove::<ClientUpgrade>();
    let retryable = route.retries > 0 && is_idempotent(req.method()) && bodyless;
    let (parts, body) = req.into_parts();
    let (mut parts, mut body) = (Some(parts), Some(body));
    let mut tried: Vec<String> = Vec::new();
    loop {
        let chosen = route.upstream.pick(Some(key), &tried)?;
        // Only a retryable (bodyless) request needs its head kept for another attempt.
        let head = match (retryable, parts.take()) {
            (true, Some(p)) => {
                parts = Some(p.clone());
                p
            }
            (_, Some(p)) => p,
            (_, None) => return Err(Error::Internal("request head already sent".into())),
        };
        let this_body = body.take().filter(|_| !retryable).unwrap_or_else(empty);
        let mut attempt_req = Request::from_parts(head, this_body);
        *attempt_req.uri_mut() = upstream_uri(&chosen.target, &pq)?;
        let attempt = ctx
            .span
            .child(|| spans::attempt(&attempt_req, &chosen.target, tried.len()));
        // The upstream's span is a child of this attempt's, so retries show apart.
        let random = ctx.trace.parent.flags;
        if let Some(trace) = attempt.trace(ctx.trace.state.clone(), random) {
            trace_headers::inject(attempt_req.headers_mut(), &trace);
        }
        let started = Instant::now();
        let client = route.upstream.client(&shared.client);
        // Boxed, as hyper-util's client boxed its own: the exchange's future is larger than
        // the rest of the request's, and inline it would be copied with every outer move.
        let exchange = Box::pin(client.request(attempt_req));
        let result = tokio::time::timeout(route.timeout, exchange).await;
        spans::record_attempt(&attempt, &result);
        let upstream_time = started.elapsed().as_secs_f64();
        route.metrics.upstream(upstream_time);
        let err = match result {
            Ok(Ok(resp)) => {
                route
                    .upstream
                    .record(chosen, Outcome::Answered(resp.status()));
                let client_side = client_upgrade.and_then(|c| c.0.lock().ok()?.take());
                if let (StatusCode::SWITCHING_PROTOCOLS, Some(c)) = (resp.status(), client_side) {
                    return Ok(splice_upgrade(c, resp));
                }
                return Ok(resp);
            }
            Ok(Err(e)) => classify_client_error(&e, route.max_body.unwrap_or(0)),
            Err(_) => Error::Timeout,
        };
        tracing::warn!(route = %route.name, upstream = %chosen.target.id, error = %err, "upstream attempt failed");
        tried.push(chosen.target.id.clone());
        let outcome = match err {
            Error::Upstream(_) | Error::Timeout => Outcome::Failed,
            _ => Outcome::ClientFault,
        };
        route.upstream.record(chosen, outcome);
        let can_retry =
            retryable && tried.len() <= route.retries as usize && matches!(err, Error::Upstream(_));
        if !can_retry {
            return Err(err);
        }
        route.metrics.retries.inc();
    }
}

fn empty() -> UpstreamBody {
    Empty::new().map_err(|n| match n {}).boxed()
}

/// Reading the client's request body failed (a malformed chunk, a connection cut mid-body):
/// the client's fault, answered 400, not the upstream's 502.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the request body: {0}")]
struct ClientBodyError(#[source] hyper::Error);

fn classify_client_error(e: &PoolError, limit: u64) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return Error::BodyTooLarge(limit);
        }
        if s.is::<ClientBodyError>() {
            return Error::BadRequest("malformed request body".into());
        }
        source = s.source();
    }
    Error::Upstream(format!("{e:?}"))
}

fn splice_upgrade(
    client: hyper::upgrade::OnUpgrade,
    mut resp: Response<PooledBody>,
) -> Response<PooledBody> {
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
            tracing::debug!("upgrade handshake did not complete");
            return;
        };
        let mut c = hyper_util::rt::TokioIo::new(c);
        let mut u = hyper_util::rt::TokioIo::new(u);
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
            tracing::debug!(error = %e, "upgraded connection closed with an error");
        }
    });
    resp
}

fn upstream_uri(target: &Target, pq: &http::uri::PathAndQuery) -> Result<Uri, Error> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(pq.clone());
    Uri::from_parts(parts).map_err(|e| Error::Internal(format!("cannot build upstream URI: {e}")))
}

fn respond(
    route: &Route,
    request_id: Option<HeaderValue>,
    resp: Response<Body>,
    allowed: Option<Allowed>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let keep_upgrade = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(&mut parts.headers, keep_upgrade);
    route.response_headers.apply(&mut parts.headers);
    if let Some(v) = request_id {
        parts.headers.insert(X_REQUEST_ID, v);
    }
    if let Some(Allowed(policy, status)) = allowed {
        parts.headers.insert("ratelimit-policy", policy);
        parts.headers.insert("ratelimit", status);
    }
    Response::from_parts(parts, body)
}

fn error_response(ctx: &Ctx, err: &Error) -> Response<Body> {
    if let Error::Internal(detail) | Error::Upstream(detail) = err {
        tracing::warn!(request_id = %ctx.request_id, error = %detail, "request failed");
    }
    problem(err, ctx.ids())
}

fn uri_too_long(ctx: &Ctx) -> Response<Body> {
    let err = Error::BadRequest("request target too long".into());
    problem_status(
        StatusCode::URI_TOO_LONG,
        "request target too long",
        ctx.ids(),
        &err,
    )
}

fn head_too_large(ctx: &Ctx) -> Response<Body> {
    let err = Error::BadRequest("request headers too large".into());
    problem_status(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the request has more header fields, or more header bytes, than this gateway accepts",
        ctx.ids(),
        &err,
    )
}

/// More fields than `max_headers`, or more bytes than `max_header_bytes` counted as they are
/// on the wire (`name: value\r\n`).
fn headers_over_limits(headers: &http::HeaderMap, limits: &crate::config::ServerOptions) -> bool {
    if headers.len() > limits.max_headers {
        return true;
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    bytes > limits.max_header_bytes
}

/// The request target's length without allocating it.
fn uri_len(uri: &Uri) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len() + 2);
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 1);
    scheme + authority + uri.path_and_query().map_or(1, |p| p.as_str().len())
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Safe methods (RFC 9110 §9.2.1) never invalidate stored responses.
fn is_safe(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn has_no_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}
