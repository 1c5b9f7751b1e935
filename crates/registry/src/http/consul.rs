//! The Consul-compatible subset, at Consul's own paths and in Consul's JSON shapes, so Consul
//! clients and Prometheus' `consul_sd_configs` work unchanged. Flotilla plays a single Consul
//! agent on one node: every instance appears on that node, each with one service check
//! (`service:<id>`). Draining appears as critical, as Consul's maintenance mode does.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query as RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use flotilla_core::ServiceName;
use flotilla_discovery::{HealthStatus, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::with_index;
use super::{Blocking, parse_json};
use crate::check::{CheckKind, CheckSpec};
use crate::record::{InstanceRecord, Registration};
use crate::{Error, Registry};

type Pairs = RawQuery<Vec<(String, String)>>;

pub(super) fn reads() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/health/service/{name}", get(health_service))
}

pub(super) fn writes() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/service/maintenance/{id}", put(maintenance))
        .route("/v1/agent/check/{verdict}/{check_id}", put(check_update))
}

/// Consul's `AgentServiceRegistration` (the fields Flotilla uses; others are ignored, as a
/// Consul agent ignores what it does not know in older versions).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulService {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    name: ServiceName,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    weights: Option<ConsulWeights>,
    #[serde(default)]
    check: Option<ConsulCheck>,
    #[serde(default)]
    checks: Vec<ConsulCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulWeights {
    passing: u32,
}

/// Consul's `AgentServiceCheck`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulCheck {
    #[serde(rename = "HTTP", default)]
    http: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    header: BTreeMap<String, Vec<String>>,
    #[serde(rename = "TCP", default)]
    tcp: Option<String>,
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    deregister_critical_service_after: Option<String>,
    #[serde(default)]
    success_before_passing: Option<u32>,
    #[serde(default)]
    failures_before_critical: Option<u32>,
    #[serde(default)]
    status: Option<HealthStatus>,
}

fn duration(field: &str, v: &str) -> Result<Duration, Error> {
    humantime::parse_duration(v)
        .map_err(|_| Error::Invalid(format!("{field} {v:?} is not a duration like 10s")))
}

impl ConsulCheck {
    fn into_spec(self) -> Result<(CheckSpec, Option<HealthStatus>), Error> {
        let kind = match (self.http, self.tcp, &self.ttl) {
            (Some(url), None, None) => CheckKind::Http {
                path: "/".into(),
                url: Some(url),
                method: self.method.unwrap_or_else(|| "GET".into()),
                headers: self
                    .header
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.into_iter().next()?)))
                    .collect(),
                expected_status: None,
            },
            (None, Some(address), None) => CheckKind::Tcp {
                address: Some(address),
            },
            (None, None, Some(ttl)) => CheckKind::Ttl {
                ttl: duration("Check.TTL", ttl)?,
            },
            _ => {
                return Err(Error::Invalid(
                    "Check needs exactly one of HTTP, TCP or TTL".into(),
                ));
            }
        };
        let mut spec = CheckSpec::new(kind);
        if let Some(i) = &self.interval {
            spec.interval = duration("Check.Interval", i)?;
        }
        spec.timeout = match &self.timeout {
            Some(t) => duration("Check.Timeout", t)?,
            None => spec.timeout.min(spec.interval),
        };
        if let Some(d) = &self.deregister_critical_service_after {
            spec.deregister_after = Some(duration("Check.DeregisterCriticalServiceAfter", d)?);
        }
        spec.successes_before_passing = self.success_before_passing.unwrap_or(0).max(1);
        spec.failures_before_critical = self.failures_before_critical.unwrap_or(0).max(1);
        Ok((spec, self.status))
    }
}

async fn register(
    State(r): State<Registry>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let svc: ConsulService = parse_json(body, r.options().max_body_bytes)?;
    let mut checks = svc.checks;
    checks.extend(svc.check);
    if checks.len() > 1 {
        return Err(Error::Invalid(
            "Checks: Flotilla supports one check per service".into(),
        ));
    }
    let (check, status) = match checks.pop() {
        Some(c) => c.into_spec().map(|(s, st)| (Some(s), st))?,
        None => (None, None),
    };
    let address = svc
        .address
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let registration = Registration {
        id: Some(
            svc.id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| svc.name.to_string()),
        ),
        weight: svc.weights.map_or(1, |w| w.passing),
        tags: svc.tags,
        metadata: svc.meta,
        check,
        status,
        ..Registration::new(flotilla_core::ServiceInstance::new(
            svc.name, address, svc.port,
        ))
    };
    r.register(registration).await?;
    Ok(().into_response())
}

fn owner(r: &Registry, id: &str) -> Result<ServiceName, Error> {
    r.find_by_id(id)
        .ok_or_else(|| Error::NotFound(format!("service ID {id:?}")))
}

async fn deregister(State(r): State<Registry>, Path(id): Path<String>) -> Result<Response, Error> {
    r.deregister(&owner(&r, &id)?, &id).await?;
    Ok(().into_response())
}

async fn maintenance(
    State(r): State<Registry>,
    Path(id): Path<String>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let service = owner(&r, &id)?;
    match pairs
        .iter()
        .find(|(k, _)| k == "enable")
        .map(|(_, v)| v.as_str())
    {
        Some("true") => r.drain(&service, &id).await?,
        Some("false") => {
            r.heartbeat(&service, &id, HealthStatus::Passing, None)
                .await?
        }
        _ => return Err(Error::Invalid("enable must be true or false".into())),
    };
    Ok(().into_response())
}

async fn check_update(
    State(r): State<Registry>,
    Path((verdict, check_id)): Path<(String, String)>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let status = match verdict.as_str() {
        "pass" => HealthStatus::Passing,
        "warn" => HealthStatus::Warning,
        "fail" => HealthStatus::Critical,
        other => return Err(Error::NotFound(format!("check verdict {other:?}"))),
    };
    let id = check_id.strip_prefix("service:").unwrap_or(&check_id);
    let service = r
        .find_by_id(id)
        .ok_or_else(|| Error::NotFound(format!("check ID {check_id:?}")))?;
    let note = pairs.into_iter().find(|(k, _)| k == "note").map(|(_, v)| v);
    if note.as_ref().is_some_and(|n| n.len() > 4096) {
        return Err(Error::Invalid("note must be at most 4096 bytes".into()));
    }
    r.heartbeat(&service, id, status, note).await?;
    Ok(().into_response())
}

async fn agent_self(State(r): State<Registry>) -> Json<Value> {
    let o = r.options();
    Json(json!({
        "Config": { "Datacenter": o.datacenter, "NodeName": o.node_name, "NodeID": node_id(&o.node_name), "Server": true },
        "Member": { "Name": o.node_name, "Addr": "127.0.0.1", "Port": 8301, "Tags": {}, "Status": 1 },
        "Meta": {},
    }))
}

fn node_id(node: &str) -> String {
    // A stable, UUID-shaped id derived from the node name (Consul node ids are UUIDs).
    let mut bytes = [0u8; 16];
    for (i, b) in node.bytes().enumerate() {
        bytes[i % 16] ^= b;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

async fn catalog_services(
    State(r): State<Registry>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let blocking = Blocking::parse(&pairs, &r)?;
    blocking.wait_on(r.watch_index(), |i| *i).await;
    let services: BTreeMap<String, Vec<String>> = r
        .services()
        .into_iter()
        .map(|s| (s.name.to_string(), s.tags))
        .collect();
    Ok(with_index(Json(services).into_response(), r.index()))
}

/// Instances of `name` carrying every `tag` given (Consul's `?tag=` filter), after a blocking
/// wait, with the service revision.
async fn tagged(
    r: &Registry,
    name: &str,
    pairs: &[(String, String)],
) -> Result<(u64, Vec<InstanceRecord>), Error> {
    let name = ServiceName::new(name)?;
    Blocking::parse(pairs, r)?.wait_on_service(r, &name).await;
    let mut query = Query::default();
    query.status = vec![
        HealthStatus::Passing,
        HealthStatus::Warning,
        HealthStatus::Critical,
        HealthStatus::Draining,
    ];
    query.tags = pairs
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    Ok(r.instances(&name, &query))
}

async fn catalog_service(
    State(r): State<Registry>,
    Path(name): Path<String>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let (revision, records) = tagged(&r, &name, &pairs).await?;
    let o = r.options();
    let body: Vec<Value> = records
        .iter()
        .map(|rec| {
            let i = &rec.instance;
            json!({
                "ID": node_id(&o.node_name), "Node": o.node_name, "Address": "127.0.0.1",
                "Datacenter": o.datacenter, "TaggedAddresses": {}, "NodeMeta": {},
                "ServiceKind": "", "ServiceID": i.id, "ServiceName": i.name, "ServiceTags": i.tags,
                "ServiceAddress": i.address, "ServicePort": i.port, "ServiceMeta": i.metadata,
                "ServiceWeights": { "Passing": i.weight, "Warning": 1 },
                "ServiceEnableTagOverride": false,
                "CreateIndex": rec.create_index, "ModifyIndex": rec.modify_index,
            })
        })
        .collect();
    Ok(with_index(Json(body).into_response(), revision))
}

async fn health_service(
    State(r): State<Registry>,
    Path(name): Path<String>,
    RawQuery(pairs): Pairs,
) -> Result<Response, Error> {
    let (revision, records) = tagged(&r, &name, &pairs).await?;
    // `?passing` (any value but "false"/"0") keeps only instances whose checks all pass.
    let passing_only = pairs
        .iter()
        .any(|(k, v)| k == "passing" && v != "false" && v != "0");
    let o = r.options();
    let node = json!({
        "ID": node_id(&o.node_name), "Node": o.node_name, "Address": "127.0.0.1",
        "Datacenter": o.datacenter, "TaggedAddresses": {}, "Meta": {},
    });
    let body: Vec<Value> = records
        .iter()
        .filter(|rec| !passing_only || rec.status == HealthStatus::Passing)
        .map(|rec| health_entry(&node, &o.node_name, rec))
        .collect();
    Ok(with_index(Json(body).into_response(), revision))
}

fn health_entry(node: &Value, node_name: &str, rec: &InstanceRecord) -> Value {
    let i = &rec.instance;
    let status = match rec.status {
        HealthStatus::Passing => "passing",
        HealthStatus::Warning => "warning",
        HealthStatus::Critical | HealthStatus::Draining => "critical",
    };
    let kind = rec.check.as_ref().map_or("", |c| c.kind_label());
    json!({
        "Node": node,
        "Service": {
            "ID": i.id, "Service": i.name, "Tags": i.tags, "Address": i.address, "Port": i.port,
            "Meta": i.metadata, "Weights": { "Passing": i.weight, "Warning": 1 },
            "EnableTagOverride": false, "CreateIndex": rec.create_index, "ModifyIndex": rec.modify_index,
        },
        "Checks": [{
            "Node": node_name, "CheckID": format!("service:{}", i.id),
            "Name": format!("Service '{}' check", i.name), "Status": status, "Notes": "",
            "Output": rec.output, "ServiceID": i.id, "ServiceName": i.name, "ServiceTags": i.tags,
            "Type": kind, "CreateIndex": rec.create_index, "ModifyIndex": rec.modify_index,
        }],
    })
}
