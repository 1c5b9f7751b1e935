//! The admin API, mounted by the control plane under `/api/v1/gateway`: routes, upstream
//! instances with breaker state, limiter stats, reload, and the response cache's stats and
//! purge.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::config::GatewayOptions;
use crate::{Error, Gateway};

/// The admin routes (relative paths; the caller nests them under `/api/v1/gateway`).
pub(crate) fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/routes", get(routes))
        .route("/upstreams", get(upstreams))
        .route("/reload", post(reload))
        .route("/cache", get(cache_stats))
        .route("/cache/purge", post(cache_purge))
        .with_state(gw)
}

async fn routes(State(gw): State<Gateway>) -> Json<serde_json::Value> {
    let table = gw.shared.table.load();
    let routes: Vec<_> = table
        .routes
        .iter()
        .enumerate()
        .map(|(order, r)| {
            json!({
                "order": order,
                "name": r.name,
                "config": r.config,
                "rate_limited_callers": r.limiter.as_ref().map(|l| l.tracked()),
            })
        })
        .collect();
    Json(json!({ "routes": routes }))
}

async fn upstreams(State(gw): State<Gateway>) -> Json<serde_json::Value> {
    let table = gw.shared.table.load();
    let mut names: Vec<_> = table.upstreams.keys().collect();
    names.sort();
    let list: Vec<_> = names
        .into_iter()
        .filter_map(|n| table.upstreams.get(n))
        .map(|u| u.describe())
        .collect();
    Json(json!({ "upstreams": list }))
}

async fn cache_stats(State(gw): State<Gateway>) -> Json<serde_json::Value> {
    Json(json!(gw.shared.cache.stats()))
}

/// What to purge: everything when both are absent.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Purge {
    /// Only this route's entries.
    route: Option<String>,
    /// Only entries whose path is this one or below it.
    prefix: Option<String>,
}

/// Drops stored responses. An empty body purges everything.
async fn cache_purge(State(gw): State<Gateway>, body: axum::body::Bytes) -> Response {
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Purge::default())
    } else {
        serde_json::from_slice::<Purge>(&body)
    };
    match parsed {
        Ok(p) if p.prefix.as_deref().is_some_and(|p| !p.starts_with('/')) => {
            bad_request("`prefix` must start with `/`".into())
        }
        Ok(p) => {
            gw.shared.cache.purge(p.route, p.prefix);
            (StatusCode::OK, Json(json!({ "purged": true }))).into_response()
        }
        Err(e) => bad_request(format!("invalid purge request: {e}")),
    }
}

fn bad_request(detail: String) -> Response {
    admin_problem(StatusCode::BAD_REQUEST, detail)
}

fn admin_problem(status: StatusCode, detail: String) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Replaces the configuration with the posted one (JSON, same shape as the TOML); on error
/// the old configuration keeps serving and the answer is a 400 naming the bad key.
async fn reload(State(gw): State<Gateway>, body: axum::body::Bytes) -> Response {
    let parsed: Result<GatewayOptions, Error> =
        serde_json::from_slice(&body).map_err(|e| Error::config("body", e.to_string()));
    let opts = match parsed {
        Ok(opts) => opts,
        Err(e) => return bad_request(e.to_string()),
    };
    // Building the table reads certificate and key files: keep it off the runtime workers.
    match tokio::task::spawn_blocking(move || gw.reload(opts)).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "reloaded": true }))).into_response(),
        Ok(Err(e)) => bad_request(e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "gateway config reload did not finish");
            let detail = "the reload did not finish; the previous configuration keeps serving";
            admin_problem(StatusCode::INTERNAL_SERVER_ERROR, detail.into())
        }
    }
}
