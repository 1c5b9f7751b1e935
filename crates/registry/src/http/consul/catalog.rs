//! Consul's read endpoints: agent self, catalog services and service, health service.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flotilla_core::ServiceName;
use flotilla_discovery::{HealthStatus, Query};
use serde_json::{Value, json};

use super::Pairs;
use crate::http::Blocking;
use crate::http::api::with_index;
use crate::record::InstanceRecord;
use crate::{Error, Registry};

pub(super) async fn agent_self(State(r): State<Registry>) -> Json<Value> {
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

pub(super) async fn catalog_services(
    State(r): State<Registry>,
    axum::extract::Query(pairs): Pairs,
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

pub(super) async fn catalog_service(
    State(r): State<Registry>,
    Path(name): Path<String>,
    axum::extract::Query(pairs): Pairs,
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

pub(super) async fn health_service(
    State(r): State<Registry>,
    Path(name): Path<String>,
    axum::extract::Query(pairs): Pairs,
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
