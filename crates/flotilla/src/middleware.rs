//! The request pipeline every service gets: request id, trace context, a tracing span, the
//! access log line, HTTP metrics, and rewriting of framework error responses into problem+json.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use flotilla_core::{RequestId, TraceContext, TraceParent, TraceState};
use flotilla_telemetry::metrics::TracedHistogram;
use flotilla_telemetry::{ExportedSpan, KeyValue, SpanBuilder, SpanKind, headers};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prometheus_client::metrics::counter::Counter;
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

/// Interned route templates, each with its metric series, so labelling a request's metrics
/// allocates and hashes nothing once a route has been seen. The set is bounded by the
/// router's routes (plus "unmatched").
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteNames(Arc<RwLock<HashMap<String, Arc<RouteMetrics>>>>);

impl RouteNames {
    pub(crate) fn get(&self, route: &str) -> Arc<RouteMetrics> {
        if let Some(r) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(route) {
            return r.clone();
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(route.to_owned())
            .or_insert_with(|| Arc::new(RouteMetrics::new(route)))
            .clone()
    }
}

/// Method labels; extension methods share "OTHER" (see [`method_label`]).
const METHOD_LABELS: [&str; METHODS] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER",
];
const METHODS: usize = 8;
/// Status classes 1xx to 5xx.
const CLASSES: usize = 5;

/// A route template and the handles of its series in the HTTP metric families, resolved on
/// a series' first request: recording a request then touches its counter and histogram
/// directly instead of hashing its label set into each family. A series appears in the
/// exposition only once it has a request, as with `Family::get_or_create` per request.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    pub(crate) name: Arc<String>,
    /// The exported server span's name per method, "GET /users/{id}".
    span_names: [Box<str>; METHODS],
    series: [MethodSeries; METHODS],
}

#[derive(Debug, Default)]
struct MethodSeries {
    requests: [OnceLock<Counter>; CLASSES],
    duration: OnceLock<TracedHistogram>,
}

impl RouteMetrics {
    fn new(route: &str) -> Self {
        Self {
            name: Arc::new(route.to_owned()),
            span_names: METHOD_LABELS.map(|m| format!("{m} {route}").into_boxed_str()),
            series: Default::default(),
        }
    }

    fn span_name(&self, method: Method) -> &str {
        &self.span_names[method.index]
    }

    fn record(
        &self,
        metrics: &HttpMetrics,
        method: Method,
        status: u16,
        seconds: f64,
        exemplar: Option<flotilla_telemetry::metrics::TraceExemplar>,
    ) {
        let series = &self.series[method.index];
        let class = status_class(status);
        series.requests[class_index(status)]
            .get_or_init(|| {
                let labels = RequestLabels {
                    method: method.label,
                    route: self.name.clone(),
                    status: class,
                };
                metrics.requests.get_or_create(&labels).clone()
            })
            .inc();
        series
            .duration
            .get_or_init(|| {
                let labels = RouteLabels {
                    method: method.label,
                    route: self.name.clone(),
                };
                metrics.duration.get_or_create(&labels).clone()
            })
            .observe(seconds, exemplar, None);
    }
}

fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// A request's method as its metric label and the index of its series.
#[derive(Debug, Clone, Copy)]
struct Method {
    label: &'static str,
    index: usize,
}

/// Methods as static labels; extension methods share one label so clients cannot create
/// unbounded series.
fn method_label(method: &http::Method) -> Method {
    let index = match *method {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::PATCH => 4,
        http::Method::HEAD => 5,
        http::Method::OPTIONS => 6,
        _ => 7,
    };
    Method {
        label: METHOD_LABELS[index],
        index,
    }
}

/// A request between the start of the outermost step ([`begin`]) and its end
/// ([`Observed::finish`]).
#[derive(Debug)]
pub(crate) struct Observed {
    started: Instant,
    method: Method,
    ctx: Arc<RequestContext>,
    id_header: Option<HeaderValue>,
    /// The log lines' span.
    span: tracing::Span,
    /// The exported server span (none when this hop records none).
    exported: ExportedSpan,
}

/// The start of the outermost step of every service, for a request to `route`: the request
/// id, this hop's trace context and spans; `req` leaves with this hop's headers and its
/// [`RequestContext`]. [`crate::observe_service`] wraps every route in this.
pub(crate) fn begin(state: &Observe, route: &RouteMetrics, req: &mut Request) -> Observed {
    let started = Instant::now();
    let method = method_label(req.method());
    // A duplicated or invalid traceparent starts a new trace (W3C trace-context §4.3).
    let incoming = headers::extract(req.headers());
    // Sampled before any span exists: an unsampled request builds none.
    let hop = flotilla_telemetry::Hop::begin(incoming.as_ref());
    let (exported, trace) = hop.start(|| server_span(req, method, route));
    let (request_id, id_header) = request_id(req.headers());
    if let Some(v) = &id_header {
        req.headers_mut().insert(REQUEST_ID, v.clone());
    }
    // Handlers that pass the incoming headers on (`propagate`) pass this hop's context.
    set_trace_headers(req.headers_mut(), &trace);
    let ctx = Arc::new(RequestContext {
        request_id,
        trace: trace.parent,
        tracestate: trace.state,
        path: req.uri().path().to_owned(),
    });
    req.extensions_mut().insert(ctx.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %ctx.request_id,
        trace_id = %ctx.trace.trace_id_hex(),
        method = %method.label,
        route = %route.name,
    );
    state.metrics.in_flight.inc();
    Observed {
        started,
        method,
        ctx,
        id_header,
        span,
        exported,
    }
}

impl Observed {
    /// Runs `f` (the call of the inner service, which builds its future) in the request's
    /// context and spans, as the future's polls will be.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        self.exported.in_scope(|| {
            let _span = (!self.span.is_disabled()).then(|| self.span.enter());
            CURRENT.sync_scope(self.ctx.clone(), f)
        })
    }

    /// The end of the outermost step: awaits `handled` (the rest of the pipeline) in the
    /// request's context, turns framework errors into problem+json, and records the request
    /// (metrics, the exported span's status, the access log line).
    pub(crate) async fn finish<Fut>(
        self,
        state: &Observe,
        route: &RouteMetrics,
        handled: Fut,
    ) -> Response
    where
        Fut: Future<Output = Response>,
    {
        let Self {
            started,
            method,
            ctx,
            id_header,
            span,
            exported,
        } = self;
        let handled = CURRENT.scope(ctx.clone(), handled);
        // Spans the handler opens (a call, a publish, an append) are children of the exported
        // one. Not logged: entering and leaving an empty span on every poll would change nothing.
        let response = match span.is_disabled() {
            true => exported.run(handled).await,
            false => exported.run(handled.instrument(span.clone())).await,
        };
        state.metrics.in_flight.dec();
        let response = CURRENT.sync_scope(ctx.clone(), || normalize_error(response));
        let mut response = crate::problem_ids::name(response, &ctx).await;
        if let Some(v) = id_header {
            response.headers_mut().insert(REQUEST_ID, v);
        }
        let status = response.status().as_u16();
        record_status(&exported, status);
        let elapsed = started.elapsed();
        let exemplar = flotilla_telemetry::metrics::exemplar(&ctx.trace);
        route.record(
            &state.metrics,
            method,
            status,
            elapsed.as_secs_f64(),
            exemplar,
        );
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| {
            // Probes come every few seconds from every checker: at info they would drown the
            // lines that matter.
            if is_probe(&route.name) {
                tracing::debug!(status, latency_ms, "request handled");
            } else {
                tracing::info!(status, latency_ms, "request handled");
            }
        });
        response
    }
}

/// The request id: the caller's when it is valid (its header line is passed on as it came),
/// else a new UUID v4, written into a stack buffer rather than formatted.
fn request_id(headers: &HeaderMap) -> (RequestId, Option<HeaderValue>) {
    if let Some(v) = headers.get(REQUEST_ID)
        && let Some(id) = v.to_str().ok().and_then(RequestId::parse)
    {
        return (id, Some(v.clone()));
    }
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    let header = HeaderValue::from_str(text).ok();
    (
        RequestId::parse(text).unwrap_or_else(RequestId::generate),
        header,
    )
}

/// Replaces the request's trace headers with this hop's context, as
/// `flotilla_telemetry::headers::inject` does, with the `traceparent` line written into a
/// stack buffer.
fn set_trace_headers(headers: &mut HeaderMap, trace: &TraceContext) {
    if let Ok(v) = HeaderValue::from_bytes(&trace.parent.to_header_bytes()) {
        headers.insert(TRACEPARENT, v);
    }
    match trace
        .state
        .as_ref()
        .and_then(|s| HeaderValue::from_str(s.as_str()).ok())
    {
        Some(v) => {
            headers.insert(headers::TRACESTATE, v);
        }
        None => {
            headers.remove(headers::TRACESTATE);
        }
    }
}

/// The exported server span, with OpenTelemetry HTTP semantic-convention attributes; built
/// only when this hop records one.
fn server_span(req: &Request, method: Method, route: &RouteMetrics) -> SpanBuilder {
    SpanBuilder::from_name(route.span_name(method).to_owned())
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method.label),
            KeyValue::new("http.route", route.name.as_str().to_owned()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
        ])
}

fn record_status(span: &ExportedSpan, status: u16) {
    if !span.is_some() {
        return;
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_error();
    }
}

fn is_probe(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_request_id_is_a_uuid_v4_in_its_header_as_in_the_context() {
        let (id, header) = request_id(&HeaderMap::new());
        let text = id.as_str();
        assert_eq!(
            header.as_ref().map(HeaderValue::as_bytes),
            Some(text.as_bytes())
        );
        let uuid = uuid::Uuid::parse_str(text).map(|u| u.get_version_num());
        assert_eq!(uuid.ok(), Some(4), "{text}");
        assert_eq!(text, text.to_ascii_lowercase());
        assert_ne!(request_id(&HeaderMap::new()).0, id);
    }

    #[test]
    fn a_valid_incoming_request_id_is_kept_with_its_header_line() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        let (id, header) = request_id(&headers);
        assert_eq!(id.as_str(), "abc-123");
        assert_eq!(header, Some(HeaderValue::from_static("abc-123")));
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id"));
        assert_ne!(request_id(&headers).0.as_str(), "bad id");
    }

    #[test]
    fn trace_headers_are_replaced_with_this_hops() {
        let mut lines = HeaderMap::new();
        lines.append(headers::TRACESTATE, HeaderValue::from_static("a=1"));
        lines.append(headers::TRACESTATE, HeaderValue::from_static("b=2"));
        let mut ctx = headers::extract(&{
            let mut h = lines.clone();
            h.insert(
                TRACEPARENT,
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            h
        })
        .unwrap_or_else(TraceContext::generate)
        .child();
        set_trace_headers(&mut lines, &ctx);
        assert_eq!(lines[TRACEPARENT], ctx.parent.to_string().as_str());
        assert_eq!(lines.get_all(headers::TRACESTATE).iter().count(), 1);
        assert_eq!(lines[headers::TRACESTATE], "a=1,b=2");
        ctx.state = None;
        set_trace_headers(&mut lines, &ctx);
        assert!(lines.get(headers::TRACESTATE).is_none());
    }
}
