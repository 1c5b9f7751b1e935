//! The request pipeline every service gets: request id, trace context, a tracing span, the
//! access log line, HTTP metrics, and rewriting of framework error responses into problem+json.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use flotilla_core::{RequestId, TraceContext, TraceParent, TraceState};
use flotilla_telemetry::headers;
use http::{HeaderValue, StatusCode, header};
use tracing::Instrument;

use crate::metrics::{HttpMetrics, RequestLabels, RouteLabels, status_class};
use crate::problem::Problem;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Correlation data of the request being handled, available to handlers as an
/// `Extension<Arc<RequestContext>>` and to any code on the request's task through
/// [`RequestContext::current`].
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (accepted from the caller when valid, else generated).
    pub request_id: RequestId,
    /// This hop's trace context: the caller's trace with this hop's span id, or a new trace.
    pub trace: TraceParent,
    /// The caller's `tracestate` (every header line combined, validated), passed on unchanged.
    pub tracestate: Option<TraceState>,
    /// The request path, for problem details' `instance`.
    pub path: String,
}

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

impl RequestContext {
    /// The context of the request whose task is running, if any.
    pub fn current() -> Option<Arc<Self>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    fn from_request(req: &Request, trace: TraceContext) -> Self {
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate);
        Self {
            request_id,
            trace: trace.parent,
            tracestate: trace.state,
            path: req.uri().path().to_owned(),
        }
    }

    /// This hop's whole trace context, what calls made for this request carry on.
    pub fn trace_context(&self) -> TraceContext {
        TraceContext {
            parent: self.trace,
            state: self.tracestate.clone(),
        }
    }
}

/// State the pipeline needs.
#[derive(Debug, Clone)]
pub(crate) struct Observe {
    pub(crate) metrics: HttpMetrics,
    pub(crate) routes: RouteNames,
}

/// Interned route templates, so labelling a request's metrics allocates nothing once a route
/// has been seen. The set is bounded by the router's routes (plus "unmatched").
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteNames(Arc<RwLock<HashMap<String, Arc<String>>>>);

impl RouteNames {
    fn get(&self, route: &str) -> Arc<String> {
        if let Some(r) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(route) {
            return r.clone();
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(route.to_owned())
            .or_insert_with(|| Arc::new(route.to_owned()))
            .clone()
    }
}

/// Methods as static labels; extension methods share one label so clients cannot create
/// unbounded series.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The outermost middleware of every service.
/// `run` is the rest of the pipeline; [`crate::observe_service`] wraps every route in this.
pub(crate) async fn observe<F, Fut>(state: &Observe, mut req: Request, run: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let method = method_label(req.method());
    let matched = req.extensions().get::<MatchedPath>();
    let route = state
        .routes
        .get(matched.map_or("unmatched", MatchedPath::as_str));
    // A duplicated or invalid traceparent starts a new trace (W3C trace-context §4.3).
    let incoming = headers::extract(req.headers());
    // Sampled before any span exists: an unsampled request builds none.
    let hop = flotilla_telemetry::Hop::begin(incoming.as_ref());
    let exported = server_span(&req, method, &route, &hop);
    let ctx = Arc::new(RequestContext::from_request(
        &req,
        hop.continue_trace(&exported),
    ));
    let request_id = HeaderValue::from_str(ctx.request_id.as_str()).ok();
    if let Some(v) = &request_id {
        req.headers_mut().insert(REQUEST_ID, v.clone());
    }
    // Handlers that pass the incoming headers on (`propagate`) pass this hop's context.
    headers::inject(req.headers_mut(), &ctx.trace_context());
    req.extensions_mut().insert(ctx.clone());
    let span = tracing::info_span!(
        parent: &exported,
        "request",
        request_id = %ctx.request_id,
        trace_id = %ctx.trace.trace_id_hex(),
        method = %method,
        route = %route,
    );
    state.metrics.in_flight.inc();
    let response = CURRENT
        .scope(ctx.clone(), run(req))
        .instrument(span.clone())
        // Spans the handler opens (a publish, an append) are children of the exported one.
        .instrument(exported.clone())
        .await;
    state.metrics.in_flight.dec();
    let response = CURRENT.sync_scope(ctx.clone(), || normalize_error(response));
    let mut response = crate::problem_ids::name(response, &ctx).await;
    if let Some(v) = request_id {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let status = response.status().as_u16();
    if !exported.is_none() {
        record_status(&exported, status);
    }
    let elapsed = started.elapsed();
    let probe = is_probe(&route);
    let exemplar = flotilla_telemetry::metrics::exemplar(&ctx.trace);
    record(
        &state.metrics,
        method,
        route,
        status,
        elapsed.as_secs_f64(),
        exemplar,
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        // Probes come every few seconds from every checker: at info they would drown the
        // lines that matter.
        if probe {
            tracing::debug!(status, latency_ms, "request handled");
        } else {
            tracing::info!(status, latency_ms, "request handled");
        }
    });
    response
}

/// The exported server span, with OpenTelemetry HTTP semantic-convention fields; none (and
/// nothing formatted) when spans are not exported.
fn server_span(
    req: &Request,
    method: &'static str,
    route: &str,
    hop: &flotilla_telemetry::Hop<'_>,
) -> tracing::Span {
    if !hop.records() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "request",
        otel.kind = "server",
        otel.name = format!("{method} {route}"),
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    )
}

fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

fn is_probe(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics")
}

fn record(
    metrics: &HttpMetrics,
    method: &'static str,
    route: Arc<String>,
    status: u16,
    seconds: f64,
    exemplar: Option<flotilla_telemetry::metrics::TraceExemplar>,
) {
    let labels = RequestLabels {
        method,
        route: route.clone(),
        status: status_class(status),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&RouteLabels { method, route })
        .observe(seconds, exemplar, None);
}

/// Error responses that are not JSON were produced by the framework or a layer (404, 405, 413,
/// timeouts) or by a handler returning a bare status: give them the problem+json body every
/// client of a Flotilla service can rely on. JSON error bodies are the handler's and are kept.
fn normalize_error(response: Response) -> Response {
    let status = response.status();
    if status.as_u16() < 400 || is_json(&response) {
        return response;
    }
    let mut problem = Problem::new(status);
    problem.detail = Some(default_detail(status).into());
    let (parts, _) = response.into_parts();
    let mut fixed = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().append(name, value.clone());
        }
    }
    fixed
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json") || ct.starts_with("application/problem+json")
        })
}

fn default_detail(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "no route matches this path",
        405 => "this route does not accept this method",
        408 | 503 => "the request did not complete in time or the service cannot take it now",
        413 => "the request body is larger than this service accepts",
        414 => "the request target (path and query) is longer than this service accepts",
        415 => "the request's content type is not supported here",
        500..=599 => {
            "the server failed to handle the request; quote the request id when reporting it"
        }
        _ => "the request could not be handled",
    }
}
