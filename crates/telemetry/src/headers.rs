//! W3C trace context on HTTP headers: read from every line of a request, written as one line
//! each.

use flotilla_core::{TraceContext, TraceParent};
use http::{HeaderMap, HeaderValue};

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// The caller's trace context, if the request carries exactly one valid `traceparent`.
pub fn extract(headers: &HeaderMap) -> Option<TraceContext> {
    // A line that is not text cannot be valid: it stands in as one that fails to parse (so a
    // `traceparent` still counts as duplicated and a `tracestate` still spoils its list).
    let lines = |name| {
        headers
            .get_all(name)
            .into_iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
    };
    TraceContext::from_headers(lines(TRACEPARENT), lines(TRACESTATE))
}

/// Replaces whatever trace headers `headers` had with `ctx`.
pub fn inject(headers: &mut HeaderMap, ctx: &TraceContext) {
    inject_parent(headers, &ctx.parent);
    headers.remove(TRACESTATE);
    if let Some(v) = ctx
        .state
        .as_ref()
        .and_then(|s| HeaderValue::from_str(s.as_str()).ok())
    {
        headers.insert(TRACESTATE, v);
    }
}

fn inject_parent(headers: &mut HeaderMap, parent: &TraceParent) {
    // Always valid: 55 characters of lower-case hex and dashes.
    if let Ok(v) = HeaderValue::from_bytes(&parent.to_header_bytes()) {
        headers.insert(TRACEPARENT, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tracestate_lines_are_combined_with_the_traceparent() {
        let h = headers(&[
            (TRACEPARENT, TP),
            (TRACESTATE, "foo=1,bar=2"),
            (TRACESTATE, "baz=3"),
        ]);
        let ctx = extract(&h).unwrap();
        assert_eq!(ctx.state.unwrap().as_str(), "foo=1,bar=2,baz=3");
    }

    #[test]
    fn two_traceparent_lines_are_no_context() {
        let h = headers(&[(TRACEPARENT, TP), (TRACEPARENT, TP)]);
        assert!(extract(&h).is_none());
    }

    #[test]
    fn a_line_that_is_not_text_spoils_the_tracestate() {
        let mut h = headers(&[(TRACEPARENT, TP), (TRACESTATE, "foo=1")]);
        h.append(TRACESTATE, HeaderValue::from_bytes(b"bar=\xff").unwrap());
        assert!(extract(&h).unwrap().state.is_none());
    }

    #[test]
    fn inject_replaces_every_trace_line() {
        let mut h = headers(&[(TRACEPARENT, TP), (TRACESTATE, "a=1"), (TRACESTATE, "b=2")]);
        let ctx = extract(&h).unwrap().child();
        inject(&mut h, &ctx);
        assert_eq!(h.get_all(TRACESTATE).iter().count(), 1);
        assert_eq!(h[TRACESTATE], "a=1,b=2");
        assert_eq!(h[TRACEPARENT], ctx.parent.to_string().as_str());
        inject(&mut h, &TraceContext::generate());
        assert!(h.get(TRACESTATE).is_none());
    }
}
