//! Protection of a service's `/admin` routes.
//!
//! With `service.admin_token` set, every admin request needs `Authorization: Bearer <token>`,
//! from any peer. Without it, only loopback peers are served: an operator on the service's
//! host (or a sidecar) can use the routes with no setup, and nothing reachable from the
//! network is open by default.
//!
//! A reverse proxy on the same host (the platform's gateway, nginx, a mesh sidecar) makes
//! every remote client a loopback peer. Proxies mark what they forward (`Forwarded`,
//! `X-Forwarded-For`, `X-Real-IP`, `Via`), so in loopback mode a request carrying any of those
//! headers is refused: behind a proxy, set `service.admin_token`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::problem::Problem;

/// Who may call the admin routes.
#[derive(Debug, Clone)]
pub(crate) enum AdminAccess {
    /// Callers presenting this bearer token.
    Token(Arc<str>),
    /// Loopback peers only.
    Loopback,
}

impl AdminAccess {
    pub(crate) fn new(token: Option<&str>) -> Self {
        match token {
            Some(t) => Self::Token(t.into()),
            None => Self::Loopback,
        }
    }
}

/// The middleware in front of admin routes.
pub(crate) async fn guard(State(access): State<AdminAccess>, req: Request, next: Next) -> Response {
    match &access {
        AdminAccess::Token(token) => {
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                return next.run(req).await;
            }
            let mut res = Problem::new(StatusCode::UNAUTHORIZED)
                .detail("admin routes need `Authorization: Bearer <token>` (service.admin_token)")
                .into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        AdminAccess::Loopback => {
            if let Some(proxy_header) = forwarded_by_a_proxy(req.headers()) {
                return Problem::new(StatusCode::FORBIDDEN)
                    .detail(format!(
                        "this request came through a proxy (it carries `{proxy_header}`), so its \
                         loopback address says nothing about the caller; set \
                         service.admin_token to use admin routes behind a proxy"
                    ))
                    .into_response();
            }
            let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
            if peer.is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback()) {
                return next.run(req).await;
            }
            Problem::new(StatusCode::FORBIDDEN)
                .detail(
                    "admin routes answer loopback callers only unless service.admin_token is set",
                )
                .into_response()
        }
    }
}

/// Headers a proxy adds to what it forwards.
const PROXY_HEADERS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

/// The first proxy header `headers` carries, if any.
fn forwarded_by_a_proxy(headers: &http::HeaderMap) -> Option<&'static str> {
    PROXY_HEADERS
        .into_iter()
        .find(|name| headers.contains_key(*name))
}

/// Compares without an early exit, so response timing does not reveal how much of a guess
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn status_for(peer: [u8; 4]) -> StatusCode {
        call_from(peer, None).await.status()
    }

    async fn call_from(peer: [u8; 4], header: Option<(&'static str, &'static str)>) -> Response {
        let app = Router::new()
            .route("/admin/x", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                AdminAccess::new(None),
                guard,
            ))
            .layer(axum::middleware::map_request(
                move |mut req: Request| async move {
                    // What `into_make_service_with_connect_info` inserts for each connection.
                    req.extensions_mut()
                        .insert(ConnectInfo(SocketAddr::from((peer, 40000))));
                    req
                },
            ));
        let mut req = Request::get("/admin/x");
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn without_a_token_only_loopback_peers_are_served() {
        assert_eq!(status_for([127, 0, 0, 1]).await, StatusCode::OK);
        assert_eq!(status_for([10, 1, 2, 3]).await, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn without_a_token_proxied_loopback_requests_are_refused() {
        for header in [
            ("forwarded", "for=203.0.113.7"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
            ("via", "1.1 gateway"),
        ] {
            let res = call_from([127, 0, 0, 1], Some(header)).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{header:?}");
            assert_eq!(
                res.headers().get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json"
            );
            let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
                .await
                .unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(body.contains("service.admin_token"), "{body}");
            assert!(body.contains(header.0), "names the header: {body}");
        }
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
