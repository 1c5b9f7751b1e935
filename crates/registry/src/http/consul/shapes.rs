//! Consul's JSON shapes for what the catalog holds: the node Flotilla plays, `AgentService`,
//! and `HealthCheck`. Each instance has one service check (`service:<id>`, the status its check
//! or heartbeats give it) and, while it is drained or in maintenance, Consul's maintenance
//! check (`_service_maintenance:<id>`, critical, the reason in `Notes`).

use flotilla_discovery::HealthStatus;
use serde_json::{Value, json};

use crate::Options;
use crate::record::InstanceRecord;

/// The address Flotilla reports for its one node and as Raft leader.
pub(super) const NODE_ADDRESS: &str = "127.0.0.1";

/// Consul's name for a check status.
pub(super) fn status_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Passing => "passing",
        HealthStatus::Warning => "warning",
        HealthStatus::Critical | HealthStatus::Draining => "critical",
    }
}

/// A stable, UUID-shaped node id derived from the node name (Consul node ids are UUIDs).
pub(super) fn node_id(node: &str) -> String {
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

/// Consul's `Node`, as the health and catalog node endpoints give it.
pub(super) fn node(o: &Options) -> Value {
    json!({
        "ID": node_id(&o.node_name), "Node": o.node_name, "Address": NODE_ADDRESS,
        "Datacenter": o.datacenter,
        "TaggedAddresses": { "lan": NODE_ADDRESS, "wan": NODE_ADDRESS }, "Meta": {},
        "CreateIndex": 1, "ModifyIndex": 1,
    })
}

/// Consul's `AgentService`.
pub(super) fn agent_service(o: &Options, rec: &InstanceRecord) -> Value {
    let i = &rec.instance;
    json!({
        "ID": i.id, "Service": i.name, "Tags": i.tags, "Meta": i.metadata, "Port": i.port,
        "Address": i.address, "TaggedAddresses": {},
        "Weights": { "Passing": i.weight, "Warning": 1 }, "EnableTagOverride": false,
        "Datacenter": o.datacenter,
    })
}

/// The instance's checks as Consul's `HealthCheck`s: the service check, then the maintenance
/// check while drained.
pub(super) fn checks(o: &Options, rec: &InstanceRecord) -> Vec<Value> {
    let i = &rec.instance;
    let kind = rec.check.as_ref().map_or("", |c| c.kind_label());
    let common = |check_id: String, name: &str, status: &str, notes: &str, output: &str| {
        json!({
            "Node": o.node_name, "CheckID": check_id, "Name": name, "Status": status,
            "Notes": notes, "Output": output, "ServiceID": i.id, "ServiceName": i.name,
            "ServiceTags": i.tags, "Type": kind, "Definition": {},
            "CreateIndex": rec.create_index, "ModifyIndex": rec.modify_index,
        })
    };
    let mut out = vec![common(
        format!("service:{}", i.id),
        &format!("Service '{}' check", i.name),
        status_name(rec.checked_status()),
        "",
        &rec.output,
    )];
    if let Some(drain) = &rec.drain {
        let mut m = common(
            format!("_service_maintenance:{}", i.id),
            "Service Maintenance Mode",
            "critical",
            &drain.reason,
            "",
        );
        m["Type"] = json!("maintenance");
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_uuid_shaped_and_stable() {
        let id = node_id("flotilla");
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(id, node_id("flotilla"));
        assert_ne!(id, node_id("other"));
    }
}
