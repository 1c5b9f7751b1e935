//! The headers every dashboard response carries, and its 404.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};

/// Only the dashboard's own files run, style and connect; nothing inline, nothing from
/// elsewhere, no framing. `img-src` allows `data:` for nothing: the pages draw charts as SVG
/// elements, not images.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Adds the security headers to every response of the dashboard's routes, redirects and
/// 404s included.
pub(crate) async fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The assets change only with the binary; revalidating costs one small request.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in set {
        h.insert::<HeaderName>(name, HeaderValue::from_static(value));
    }
    res
}

/// A problem+json 404 naming the asset that does not exist.
pub(crate) fn not_found(name: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": format!("the dashboard has no file named {name:?}"),
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}
