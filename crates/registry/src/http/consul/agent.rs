//! Consul's agent write endpoints: service register/deregister/maintenance and TTL check
//! updates.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flotilla_core::ServiceName;
use flotilla_discovery::HealthStatus;
use serde::Deserialize;

use super::{Pairs, keys};
use crate::check::{CheckKind, CheckSpec};
use crate::http::parse_json;
use crate::record::Registration;
use crate::{Error, Registry};

/// Consul's `AgentServiceRegistration` (the fields Flotilla uses; others are ignored, as Consul
/// ignores fields it does not know). Keys are matched ignoring case, see [`keys`].
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
    /// Connect proxies and gateways (`connect-proxy`, ...) are not supported.
    #[serde(default)]
    kind: Option<String>,
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

pub(super) async fn register(
    State(r): State<Registry>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let raw: serde_json::Value = parse_json(body, r.options().max_body_bytes)?;
    let raw = keys::canonical_service(raw);
    if let Some(kind) = keys::unsupported_check_kind(&raw) {
        return Err(Error::Invalid(format!(
            "Check.{kind}: {kind} checks are not supported; use HTTP, TCP or TTL"
        )));
    }
    let svc: ConsulService = serde_json::from_value(raw).map_err(|e| Error::Body(e.to_string()))?;
    if let Some(kind) = svc.kind.as_ref().filter(|k| !k.is_empty()) {
        return Err(Error::Invalid(format!(
            "Kind {kind:?}: only typical services are supported, not proxies or gateways"
        )));
    }
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

async fn owner(r: &Registry, id: &str) -> Result<ServiceName, Error> {
    r.locate(id)
        .await
        .ok_or_else(|| Error::NotFound(format!("service ID {id:?}")))
}

pub(super) async fn deregister(
    State(r): State<Registry>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    r.deregister(&owner(&r, &id).await?, &id).await?;
    Ok(().into_response())
}

/// The reason Consul records when maintenance is enabled without one.
const DEFAULT_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

pub(super) async fn maintenance(
    State(r): State<Registry>,
    Path(id): Path<String>,
    axum::extract::Query(pairs): Pairs,
) -> Result<Response, Error> {
    let service = owner(&r, &id).await?;
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let enable = get("enable").ok_or_else(|| Error::Invalid("enable is required".into()))?;
    if go_bool(enable)
        .ok_or_else(|| Error::Invalid(format!("enable {enable:?} must be true or false")))?
    {
        let reason = get("reason").filter(|v| !v.is_empty());
        if reason.is_some_and(|v| v.len() > 4096) {
            return Err(Error::Invalid("reason must be at most 4096 bytes".into()));
        }
        let reason = reason.unwrap_or(DEFAULT_REASON).to_owned();
        r.maintenance(&service, &id, reason).await?;
    } else {
        r.end_drain(&service, &id).await?;
    }
    Ok(().into_response())
}

/// Go's `strconv.ParseBool`, which Consul uses for flags like `enable`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub(super) async fn check_update(
    State(r): State<Registry>,
    Path((verdict, check_id)): Path<(String, String)>,
    axum::extract::Query(pairs): Pairs,
) -> Result<Response, Error> {
    let status = match verdict.as_str() {
        "pass" => HealthStatus::Passing,
        "warn" => HealthStatus::Warning,
        "fail" => HealthStatus::Critical,
        other => return Err(Error::NotFound(format!("check verdict {other:?}"))),
    };
    let id = check_id.strip_prefix("service:").unwrap_or(&check_id);
    let service = r
        .locate(id)
        .await
        .ok_or_else(|| Error::NotFound(format!("check ID {check_id:?}")))?;
    let note = pairs.into_iter().find(|(k, _)| k == "note").map(|(_, v)| v);
    if note.as_ref().is_some_and(|n| n.len() > 4096) {
        return Err(Error::Invalid("note must be at most 4096 bytes".into()));
    }
    r.heartbeat(&service, id, status, note).await?;
    Ok(().into_response())
}
