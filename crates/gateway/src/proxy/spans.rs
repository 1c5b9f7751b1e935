//! The gateway's exported spans: one server span per request, one client span per upstream
//! attempt (so retries show as separate attempts). They are built only for a sampled request:
//! otherwise the request path formats and allocates nothing for them.

use flotilla_telemetry::{ExportedSpan, KeyValue, SpanBuilder, SpanKind};
use http::{Request, Response};

use crate::upstream::Target;

/// The server span of a client request; the route is added once one matched.
pub(super) fn request<B>(req: &Request<B>) -> SpanBuilder {
    let method = req.method().as_str().to_owned();
    SpanBuilder::from_name(method.clone())
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("url.scheme", scheme(req.uri().scheme_str())),
        ])
}

fn scheme(s: Option<&str>) -> &'static str {
    match s {
        Some("https") => "https",
        _ => "http",
    }
}

pub(super) fn record_response(span: &ExportedSpan, route: Option<&str>, status: u16) {
    if !span.is_some() {
        return;
    }
    if let Some(route) = route {
        // The gateway's routes are named, not templated: the name is what groups requests.
        span.set_attribute(KeyValue::new("http.route", route.to_owned()));
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_error();
    }
}

/// A client span for one attempt at an upstream instance; `resend` counts the attempts
/// before it (`http.request.resend_count`).
pub(super) fn attempt<B>(req: &Request<B>, target: &Target, resend: usize) -> SpanBuilder {
    let host = target.authority.host().to_owned();
    let port = target
        .authority
        .port_u16()
        .unwrap_or(match target.scheme.as_str() {
            "https" => 443,
            _ => 80,
        });
    let method = req.method().as_str().to_owned();
    SpanBuilder::from_name(method.clone())
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.request.resend_count", resend as i64),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", i64::from(port)),
        ])
}

pub(super) fn record_attempt<B, E, T>(
    span: &ExportedSpan,
    result: &Result<Result<Response<B>, E>, T>,
) {
    if !span.is_some() {
        return;
    }
    let error = match result {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let code = KeyValue::new("http.response.status_code", i64::from(status.as_u16()));
            span.set_attribute(code);
            (status.as_u16() >= 500).then(|| status.as_str().to_owned())
        }
        Ok(Err(_)) => Some("transport".to_owned()),
        Err(_) => Some("timeout".to_owned()),
    };
    if let Some(kind) = error {
        span.set_error();
        span.set_attribute(KeyValue::new("error.type", kind));
    }
}
