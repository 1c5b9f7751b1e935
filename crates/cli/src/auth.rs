//! The control plane's write protection for the bus, event-store and gateway-admin APIs: when
//! `registry.token` is set (it must be when the control plane listens beyond loopback), every
//! request that is not a read needs `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla::Problem;
use http::{HeaderValue, Method, StatusCode, header};

pub(crate) async fn require_token_for_writes(
    token: Option<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    let read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !leases_events(req.uri().path());
    let Some(token) = token.filter(|_| !read) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let mut res = Problem::new(StatusCode::UNAUTHORIZED)
        .detail(
            "this write needs `Authorization: Bearer <token>` (the control plane's registry.token)",
        )
        .into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1) and one or more spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bus's SSE pull is a GET, but it leases events away from the group's other consumers,
/// exactly like the long-poll `POST .../pull`: it needs the token too.
fn leases_events(path: &str) -> bool {
    path.strip_prefix("/api/v1/bus/groups/")
        .is_some_and(|rest| rest.ends_with("/events"))
}

/// Compares without an early exit, so response timing does not reveal how much of a guess
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, constant_time_eq, leases_events};

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        for value in ["Basic t0k", "Bearert0k", "t0k", "Bearer ", "Bearer"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }

    #[test]
    fn the_sse_pull_counts_as_a_write() {
        assert!(leases_events("/api/v1/bus/groups/billing/events"));
        assert!(!leases_events("/api/v1/bus/groups"));
        assert!(!leases_events("/api/v1/bus/topics/orders/events"));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
