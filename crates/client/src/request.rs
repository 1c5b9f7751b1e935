//! Building, sending and reading one call.

use std::time::Duration;

use bytes::Bytes;
use flotilla_core::{RequestId, ServiceName, TraceContext, TraceParent};
use flotilla_resilience::deadline::Deadline;
use flotilla_resilience::retry::IDEMPOTENCY_KEY;
use flotilla_telemetry::headers as trace_headers;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use tracing::Instrument as _;

use crate::{Error, ServiceClient};

/// The request-id header sent to every upstream.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// One call being built; finish it with [`RequestBuilder::send`].
#[derive(Debug)]
pub struct RequestBuilder {
    client: ServiceClient,
    service: Result<ServiceName, String>,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Result<Bytes, Error>,
    deadline: Option<Deadline>,
    request_id: Option<RequestId>,
    parent: Option<TraceContext>,
    error: Option<Error>,
}

impl RequestBuilder {
    pub(crate) fn new(
        client: ServiceClient,
        service: Result<ServiceName, String>,
        method: Method,
        path: &str,
    ) -> Self {
        Self {
            client,
            service,
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Ok(Bytes::new()),
            deadline: None,
            request_id: None,
            parent: None,
            error: None,
        }
    }

    /// Adds a header; an invalid name or value fails the call when sent.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.error = Some(Error::InvalidRequest(format!(
                    "invalid header {name:?}: {value:?}"
                )))
            }
        }
        self
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Ok(body.into());
        self
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.body = serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(Error::Json);
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// Sets `Idempotency-Key`, which also makes a POST or PATCH retryable.
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header(IDEMPOTENCY_KEY, key)
    }

    /// Finishes within `budget` at the latest (the tighter of this, the policy's timeout and
    /// any propagated deadline wins).
    pub fn timeout(mut self, budget: Duration) -> Self {
        self.deadline = Some(Deadline::after(budget).min(self.deadline));
        self
    }

    /// Finishes by `deadline` at the latest: pass the [`Deadline`] parsed when the incoming
    /// request arrived (`Deadline::from_headers`), so time spent since counts against it.
    pub fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline.min(self.deadline));
        self
    }

    /// Continues the work of an incoming request: its `x-request-id`, trace (as a child span,
    /// with its `tracestate`) and remaining deadline travel on. Malformed incoming values are
    /// replaced, not passed on; a duplicated `traceparent` starts a new trace.
    /// The deadline header holds a budget relative to when it arrived; when time has passed
    /// since, also pass the deadline parsed at arrival to [`RequestBuilder::deadline`].
    pub fn propagate(mut self, incoming: &HeaderMap) -> Self {
        let text = |name: &str| incoming.get(name).and_then(|v| v.to_str().ok());
        self.request_id = text(REQUEST_ID).and_then(RequestId::parse);
        self.parent = trace_headers::extract(incoming);
        if let Some(d) = Deadline::from_headers(incoming) {
            self.deadline = Some(d.min(self.deadline));
        }
        self
    }

    /// Uses this request id and trace instead of generating new ones.
    pub fn context(mut self, request_id: RequestId, parent: Option<TraceParent>) -> Self {
        self.request_id = Some(request_id);
        self.parent = parent.map(|parent| TraceContext {
            parent,
            state: None,
        });
        self
    }

    /// Continues this trace, `tracestate` included (the SDK's `RequestContext::trace_context`).
    pub fn trace_context(mut self, ctx: TraceContext) -> Self {
        self.parent = Some(ctx);
        self
    }

    fn build(
        self,
        trace: &TraceContext,
    ) -> Result<(ServiceClient, ServiceName, Request<Full<Bytes>>), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let service = self.service.map_err(Error::InvalidRequest)?;
        if !self.path.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "path {:?} must start with '/'",
                self.path
            )));
        }
        let mut req = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .body(Full::new(self.body?))
            .map_err(|e| Error::InvalidRequest(format!("path {:?}: {e}", self.path)))?;
        let mut headers = self.headers;
        let id = match &self.request_id {
            Some(id) => HeaderValue::from_str(id.as_str()),
            None => new_request_id(),
        };
        headers.insert(REQUEST_ID, id.map_err(|e| Error::Internal(e.to_string()))?);
        inject_trace(&mut headers, trace);
        *req.headers_mut() = headers;
        if let Some(d) = self.deadline {
            req.extensions_mut().insert(d);
        }
        Ok((self.client, service, req))
    }

    /// Sends the call through discovery, balancing and the service's policy. A status of 400
    /// or more is returned as [`Error::Status`].
    pub async fn send(self) -> Result<Response, Error> {
        // Sampled before any span exists: an unsampled call builds none and formats nothing.
        // Without a caller's trace, a call made inside an exported span (a handler's) follows
        // that span's trace and decision; only a call outside any starts a trace.
        let hop = flotilla_telemetry::Hop::begin_within(self.parent.as_ref());
        let span = match hop.records() {
            true => self.call_span(),
            false => tracing::Span::none(),
        };
        let trace = hop.continue_trace(&span);
        let (client, service, req) = self.build(&trace)?;
        let upstream = client.upstream(&service);
        let resp = upstream
            .stack
            .oneshot(req)
            .instrument(span.clone())
            .await
            .map_err(|e| Error::from_stack(service.as_str(), e));
        if !span.is_none() {
            record_outcome(&span, resp.as_ref().map(|r| r.status()));
        }
        let (parts, body) = resp?.into_parts();
        if parts.status.as_u16() >= 400 {
            return Err(Error::Status {
                status: parts.status,
                body,
            });
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

impl RequestBuilder {
    /// The exported client span, with OpenTelemetry HTTP semantic-convention fields; built only
    /// for a call whose [`flotilla_telemetry::Hop`] records.
    fn call_span(&self) -> tracing::Span {
        let service = self.service.as_ref().map_or("", |s| s.as_str());
        tracing::info_span!(
            target: flotilla_telemetry::TARGET,
            "call",
            otel.kind = "client",
            otel.name = self.method.as_str(),
            otel.status_code = tracing::field::Empty,
            http.request.method = self.method.as_str(),
            server.address = service,
            url.path = self.path.as_str(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    }
}

/// A fresh request id, a hyphenated UUID v4 written straight into the header value.
fn new_request_id() -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

/// Replaces whatever trace headers the caller set with `ctx` (as
/// `flotilla_telemetry::headers::inject` does), writing `traceparent` without formatting
/// machinery.
fn inject_trace(headers: &mut HeaderMap, ctx: &TraceContext) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let p = &ctx.parent;
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let bytes = p.trace_id.iter().chain(&p.parent_id).chain([&p.flags]);
    // Trace id at 3..35, parent id at 36..52, flags at 53..55.
    let at = (3..35).step_by(2).chain((36..52).step_by(2)).chain([53]);
    for (b, i) in bytes.zip(at) {
        buf[i] = HEX[usize::from(b >> 4)];
        buf[i + 1] = HEX[usize::from(b & 0xf)];
    }
    // Always valid: lower-case hex and dashes.
    if let Ok(v) = HeaderValue::from_bytes(&buf) {
        headers.insert(trace_headers::TRACEPARENT, v);
    }
    headers.remove(trace_headers::TRACESTATE);
    if let Some(v) = ctx
        .state
        .as_ref()
        .and_then(|s| HeaderValue::from_str(s.as_str()).ok())
    {
        headers.insert(trace_headers::TRACESTATE, v);
    }
}

fn record_outcome(span: &tracing::Span, outcome: Result<StatusCode, &Error>) {
    match outcome {
        Ok(status) => {
            span.record("http.response.status_code", status.as_u16());
            if status.as_u16() >= 400 {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", status.as_str());
            }
        }
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error_type(e));
        }
    }
}

/// A low-cardinality name of the failure, as `error.type` asks.
fn error_type(e: &Error) -> &'static str {
    match e {
        Error::InvalidRequest(_) => "invalid_request",
        Error::NoHealthyInstance { .. } => "no_healthy_instance",
        Error::CircuitOpen { .. } => "circuit_open",
        Error::DeadlineExceeded => "deadline_exceeded",
        Error::Timeout(_) => "timeout",
        Error::Rejected { .. } => "rejected",
        Error::Status { .. } => "status",
        Error::Transport { .. } => "transport",
        _ => "_OTHER",
    }
}

/// A successful answer, body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status (below 400).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent_is_written_as_w3c_text_and_replaces_the_callers_trace_lines() {
        let mut headers = HeaderMap::new();
        headers.append(trace_headers::TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(trace_headers::TRACESTATE, HeaderValue::from_static("b=2"));
        for flags in [0x00, 0x01, 0x02, 0x03, 0xa5, 0xff] {
            let mut ctx = TraceContext::generate();
            ctx.parent.flags = flags;
            inject_trace(&mut headers, &ctx);
            assert_eq!(headers[TRACEPARENT], ctx.parent.to_string().as_str());
            assert!(headers.get(trace_headers::TRACESTATE).is_none());
        }
        let ctx = trace_headers::extract(&{
            let mut h = HeaderMap::new();
            h.insert(
                TRACEPARENT,
                HeaderValue::from_static("00-12345678901234567890123456789012-1234567890123456-01"),
            );
            h.insert(trace_headers::TRACESTATE, HeaderValue::from_static("k=v"));
            h
        })
        .unwrap();
        inject_trace(&mut headers, &ctx);
        assert_eq!(
            headers[TRACEPARENT],
            "00-12345678901234567890123456789012-1234567890123456-01"
        );
        assert_eq!(headers.get_all(trace_headers::TRACESTATE).iter().count(), 1);
        assert_eq!(headers[trace_headers::TRACESTATE], "k=v");
    }

    #[test]
    fn a_generated_request_id_is_a_fresh_hyphenated_uuid() {
        let a = new_request_id().unwrap();
        let b = new_request_id().unwrap();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert!(RequestId::parse(a).is_some());
        let parsed = uuid::Uuid::parse_str(a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), a);
    }
}
