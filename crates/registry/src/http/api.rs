//! The native API under `/api/v1/registry`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query as RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use flotilla_core::ServiceName;
use flotilla_discovery::{HealthStatus, Query, TagMatch};
use serde::Deserialize;
use serde_json::json;

use super::{Blocking, parse_json, watch};
use crate::record::Registration;
use crate::{Error, Registry};

type Pairs = RawQuery<Vec<(String, String)>>;

/// Header carrying the service revision on instance lists (also sent as `X-Consul-Index`).
pub const REVISION_HEADER: &str = "x-flotilla-revision";

pub(super) fn reads() -> Router<Registry> {
    Router::new()
        .route("/api/v1/registry/services", get(list_services))
        .route("/api/v1/registry/services/{name}", get(list_instances))
        .route(
            "/api/v1/registry/services/{name}/instances/{id}",
            get(show_instance),
        )
        .route("/api/v1/registry/watch", get(watch::stream))
        .route("/api/v1/registry/metrics", get(metrics))
}

pub(super) fn writes() -> Router<Registry> {
    Router::new()
        .route("/api/v1/registry/instances", post(register))
        .route(
            "/api/v1/registry/services/{name}/instances/{id}",
            delete(deregister),
        )
        .route(
            "/api/v1/registry/services/{name}/instances/{id}/heartbeat",
            put(heartbeat),
        )
        .route(
            "/api/v1/registry/services/{name}/instances/{id}/drain",
            put(drain),
        )
}

fn service(name: &str) -> Result<ServiceName, Error> {
    Ok(ServiceName::new(name)?)
}

async fn list_services(State(r): State<Registry>) -> Response {
    with_index(Json(r.services()).into_response(), r.index())
}

async fn list_instances(
    State(r): State<Registry>,
    Path(name): Path<String>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let name = service(&name)?;
    let query = discovery_query(&pairs)?;
    let blocking = Blocking::parse(&pairs, &r)?;
    blocking.wait_on_service(&r, &name).await;
    let (revision, instances) = r.instances(&name, &query);
    let body = json!({ "service": name, "revision": revision, "instances": instances });
    Ok(with_index(Json(body).into_response(), revision))
}

/// Builds a discovery query from `status`, `version`, `tags`, `tag_match` and `meta.KEY`.
pub(crate) fn discovery_query(pairs: &[(String, String)]) -> Result<Query, Error> {
    let mut q = Query::default();
    for (k, v) in pairs {
        match k.as_str() {
            "status" if v == "any" => q.status = all_statuses(),
            "status" => q.status.extend(parse_statuses(v)?),
            "version" => q.version = Some(v.clone()),
            "tags" | "tag" => q
                .tags
                .extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_owned)),
            "tag_match" => {
                q.tag_match = match v.as_str() {
                    "all" => TagMatch::All,
                    "any" => TagMatch::Any,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "tag_match {v:?} must be all or any"
                        )));
                    }
                }
            }
            k if k.starts_with("meta.") => {
                q.metadata.insert(k["meta.".len()..].to_owned(), v.clone());
            }
            _ => {}
        }
    }
    Ok(q.validated()?)
}

fn all_statuses() -> Vec<HealthStatus> {
    use HealthStatus::*;
    vec![Passing, Warning, Critical, Draining]
}

fn parse_statuses(v: &str) -> Result<Vec<HealthStatus>, Error> {
    v.split(',')
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
                Error::Invalid(format!(
                    "status {s:?} must be passing, warning, critical, draining or any"
                ))
            })
        })
        .collect()
}

pub(crate) fn with_index(mut response: Response, index: u64) -> Response {
    let value = HeaderValue::from(index);
    response
        .headers_mut()
        .insert(HeaderName::from_static(REVISION_HEADER), value.clone());
    response
        .headers_mut()
        .insert(HeaderName::from_static("x-consul-index"), value);
    response
}

async fn show_instance(
    State(r): State<Registry>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Error> {
    let name = service(&name)?;
    let record = r
        .record(&name, &id)
        .ok_or_else(|| Error::NotFound(format!("instance {id:?} of service {name}")))?;
    Ok(Json(record).into_response())
}

async fn register(
    State(r): State<Registry>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let registration: Registration = parse_json(body, r.options().max_body_bytes)?;
    let record = r.register(registration).await?;
    Ok((StatusCode::OK, Json(record)).into_response())
}

async fn deregister(
    State(r): State<Registry>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Error> {
    r.deregister(&service(&name)?, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Heartbeat body: all optional; an empty body is a pass.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Heartbeat {
    #[serde(default)]
    status: Option<HealthStatus>,
    #[serde(default)]
    output: Option<String>,
}

async fn heartbeat(
    State(r): State<Registry>,
    Path((name, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let empty = body.as_ref().is_ok_and(|b| b.is_empty());
    let beat: Heartbeat = if empty {
        Heartbeat::default()
    } else {
        parse_json(body, r.options().max_body_bytes)?
    };
    if beat.output.as_ref().is_some_and(|o| o.len() > 4096) {
        return Err(Error::Invalid("output must be at most 4096 bytes".into()));
    }
    let status = beat.status.unwrap_or(HealthStatus::Passing);
    let record = r
        .heartbeat(&service(&name)?, &id, status, beat.output)
        .await?;
    Ok(Json(record).into_response())
}

async fn drain(
    State(r): State<Registry>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, Error> {
    let record = r.drain(&service(&name)?, &id).await?;
    Ok(Json(record).into_response())
}

async fn metrics(State(r): State<Registry>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], r.metrics_text()).into_response()
}
