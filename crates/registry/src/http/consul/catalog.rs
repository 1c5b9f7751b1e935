//! Consul's catalog reads: agent self, services, one service, nodes, datacenters, and the
//! status endpoints (one node is its own leader).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flotilla_core::ServiceName;
use flotilla_discovery::{HealthStatus, Query};
use serde_json::{Value, json};

use super::Pairs;
use super::shapes::{NODE_ADDRESS, node, node_id};
use crate::http::Blocking;
use crate::http::api::with_index;
use crate::record::InstanceRecord;
use crate::{Error, Registry};

pub(super) async fn agent_self(State(r): State<Registry>) -> Json<Value> {
    let o = r.options();
    Json(json!({
        "Config": { "Datacenter": o.datacenter, "NodeName": o.node_name, "NodeID": node_id(&o.node_name), "Server": true },
        "Member": { "Name": o.node_name, "Addr": NODE_ADDRESS, "Port": 8301, "Tags": {}, "Status": 1 },
        "Meta": {},
    }))
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
pub(super) async fn tagged(
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
                "ID": node_id(&o.node_name), "Node": o.node_name, "Address": NODE_ADDRESS,
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

pub(super) async fn catalog_nodes(State(r): State<Registry>) -> Response {
    with_index(Json(json!([node(r.options())])).into_response(), r.index())
}

pub(super) async fn catalog_datacenters(State(r): State<Registry>) -> Json<Value> {
    Json(json!([r.options().datacenter]))
}

/// The Raft leader's address: Flotilla's single node leads itself (on Consul's server port).
pub(super) async fn status_leader() -> Json<Value> {
    Json(json!(format!("{NODE_ADDRESS}:8300")))
}

pub(super) async fn status_peers() -> Json<Value> {
    Json(json!([format!("{NODE_ADDRESS}:8300")]))
}
