//! The registry's HTTP surface: the native API under `/api/v1/registry` and the
//! Consul-compatible subset at Consul's own paths. Writes pass the bearer-token gate; bodies
//! pass the size limit before anything is parsed.

pub(crate) mod api;
mod consul;
mod watch;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tokio::sync::watch as tokio_watch;

pub use api::REVISION_HEADER;

use flotilla_core::ServiceName;

use crate::{Error, Registry};

impl Registry {
    /// The registry's routes: `/api/v1/registry/...` and the Consul-compatible `/v1/...`.
    /// Merge it into the control plane's router.
    pub fn router(&self) -> Router {
        let writes = api::writes()
            .merge(consul::writes())
            .route_layer(middleware::from_fn_with_state(self.clone(), require_token));
        api::reads()
            .merge(consul::reads())
            .merge(writes)
            .layer(DefaultBodyLimit::max(self.options().max_body_bytes))
            .with_state(self.clone())
    }
}

async fn require_token(State(registry): State<Registry>, request: Request, next: Next) -> Response {
    match &registry.options().token {
        Some(token) if !presents(request.headers(), token) => {
            axum::response::IntoResponse::into_response(Error::Unauthenticated)
        }
        _ => next.run(request).await,
    }
}

/// Whether the request carries `token` as a bearer token or as Consul's `X-Consul-Token`.
fn presents(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let consul = headers.get("x-consul-token").and_then(|v| v.to_str().ok());
    [bearer, consul]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a JSON body, turning an over-limit body into 413 and bad JSON into 400.
pub(crate) fn parse_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, Error> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(limit),
        _ => Error::Body(rejection.body_text()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Body(e.to_string()))
}

/// Blocking-query parameters: `index` (the revision the caller has) and `wait` (how long to
/// hold the request when nothing changed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocking {
    index: Option<u64>,
    wait: Duration,
}

impl Blocking {
    /// Reads `index` and `wait` from query pairs; `wait` is a duration like `30s` or `5m`.
    pub(crate) fn parse(pairs: &[(String, String)], registry: &Registry) -> Result<Self, Error> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let index = match get("index") {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::Invalid(format!("index {v:?} is not a number")))?,
            ),
        };
        let wait = match get("wait") {
            None | Some("") => registry.options().default_wait,
            Some(v) => humantime::parse_duration(v).map_err(|_| {
                Error::Invalid(format!("wait {v:?} is not a duration like 30s or 5m"))
            })?,
        };
        Ok(Self {
            index,
            wait: wait.min(registry.options().max_wait),
        })
    }

    /// Waits on the revision of `service`. Only a blocking query creates a watch slot for a
    /// service not seen yet, so plain reads of random names leave nothing behind.
    pub(crate) async fn wait_on_service(self, registry: &Registry, service: &ServiceName) {
        if self.index.is_some() {
            let rx = registry.slot(service).subscribe();
            self.wait_on(rx, |set| set.revision).await;
        }
    }

    /// Waits until `current(rx)` differs from `index`, or `wait` passes. Without `index` it
    /// answers at once; `index=0` waits for a service that does not exist yet to appear.
    pub(crate) async fn wait_on<T>(
        self,
        mut rx: tokio_watch::Receiver<T>,
        current: impl Fn(&T) -> u64,
    ) {
        let Some(index) = self.index else { return };
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if current(&rx.borrow_and_update()) != index {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let mut h = HeaderMap::new();
        assert!(!presents(&h, "secret"));
        h.insert("authorization", "Bearer secre".parse().unwrap());
        assert!(!presents(&h, "secret"));
        h.insert("authorization", "Bearer secret".parse().unwrap());
        assert!(presents(&h, "secret"));
        let mut c = HeaderMap::new();
        c.insert("x-consul-token", "secret".parse().unwrap());
        assert!(presents(&c, "secret"));
    }
}
