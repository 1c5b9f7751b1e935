//! Consul's request decoding is case-insensitive (Go's `encoding/json` matches keys to fields
//! ignoring case) and also takes snake_case spellings (`deregister_critical_service_after`):
//! clients such as py-consul send `name`, `id`, `check`, `ttl`. This rewrites the keys of a
//! registration body to the canonical PascalCase names before serde reads it. Keys that match
//! no field are kept as they are, and serde then ignores them, as Consul does. User data
//! (`Meta` and `Header` maps) is never rewritten.

use serde_json::{Map, Value};

/// Fields of Consul's `AgentServiceRegistration` that Flotilla reads or knowingly ignores.
const SERVICE: &[&str] = &[
    "ID",
    "Name",
    "Tags",
    "Address",
    "Port",
    "Meta",
    "Weights",
    "Check",
    "Checks",
    "EnableTagOverride",
    "Kind",
];

/// Fields of Consul's `AgentServiceCheck`.
const CHECK: &[&str] = &[
    "CheckID",
    "Name",
    "Notes",
    "HTTP",
    "Method",
    "Header",
    "TCP",
    "TTL",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
    "Status",
    "Args",
    "ScriptArgs",
    "GRPC",
    "H2PING",
    "UDP",
    "OSService",
    "DockerContainerID",
    "AliasService",
    "AliasNode",
    "TLSSkipVerify",
];

const WEIGHTS: &[&str] = &["Passing", "Warning"];

/// Check kinds Consul has and Flotilla does not run. A check of one of them is refused by name
/// rather than dropped, which would leave the instance passing with no check.
const UNSUPPORTED_KINDS: &[&str] = &[
    "Args",
    "ScriptArgs",
    "GRPC",
    "H2PING",
    "UDP",
    "OSService",
    "DockerContainerID",
    "AliasService",
    "AliasNode",
];

/// The first check kind in a canonical registration body that Flotilla cannot run.
pub(super) fn unsupported_check_kind(body: &Value) -> Option<&'static str> {
    let single = body.get("Check").into_iter();
    let many = body
        .get("Checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    single.chain(many).find_map(|check| {
        UNSUPPORTED_KINDS
            .iter()
            .copied()
            .find(|k| check.get(k).is_some_and(|v| !v.is_null()))
    })
}

/// The registration body with canonical key names, recursively for `Check`, `Checks` and
/// `Weights`.
pub(super) fn canonical_service(body: Value) -> Value {
    let Value::Object(map) = body else {
        return body;
    };
    let mut map = canonical(map, SERVICE);
    if let Some(check) = map.remove("Check") {
        map.insert("Check".into(), canonical_object(check, CHECK));
    }
    if let Some(Value::Array(checks)) = map.remove("Checks") {
        let checks = checks
            .into_iter()
            .map(|c| canonical_object(c, CHECK))
            .collect();
        map.insert("Checks".into(), Value::Array(checks));
    }
    if let Some(weights) = map.remove("Weights") {
        map.insert("Weights".into(), canonical_object(weights, WEIGHTS));
    }
    Value::Object(map)
}

fn canonical_object(value: Value, fields: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(canonical(map, fields)),
        other => other,
    }
}

/// Renames each key matching a field (ignoring case and underscores) to the field's name.
/// When two spellings of one field are given, the later one wins, as in Go.
fn canonical(map: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    map.into_iter()
        .map(|(key, value)| {
            let folded = fold(&key);
            let name = fields
                .iter()
                .find(|f| fold(f) == folded)
                .map_or(key, |f| (*f).to_owned());
            (name, value)
        })
        .collect()
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lowercase_and_snake_case_keys_become_consuls_field_names() {
        let body = json!({
            "name": "web", "id": "web1", "port": 80, "tags": ["a"],
            "meta": {"zone": "eu", "Version": "1"},
            "weights": {"passing": 3},
            "check": {"ttl": "10s", "deregister_critical_service_after": "1m", "status": "passing"},
            "checks": [{"http": "http://h/", "interval": "5s", "header": {"x-a": ["1"]}}],
            "unknown_field": true,
        });
        let got = canonical_service(body);
        assert_eq!(
            got,
            json!({
                "Name": "web", "ID": "web1", "Port": 80, "Tags": ["a"],
                "Meta": {"zone": "eu", "Version": "1"},
                "Weights": {"Passing": 3},
                "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m", "Status": "passing"},
                "Checks": [{"HTTP": "http://h/", "Interval": "5s", "Header": {"x-a": ["1"]}}],
                "unknown_field": true,
            })
        );
    }

    #[test]
    fn checks_of_kinds_flotilla_cannot_run_are_named() {
        let body = canonical_service(json!({"checks": [{"ttl": "5s"}, {"grpc": "h:1"}]}));
        assert_eq!(unsupported_check_kind(&body), Some("GRPC"));
        let body = canonical_service(json!({"check": {"http": "http://h/", "args": null}}));
        assert_eq!(unsupported_check_kind(&body), None);
    }

    #[test]
    fn non_objects_are_left_for_serde_to_refuse() {
        assert_eq!(canonical_service(json!([1])), json!([1]));
        assert_eq!(
            canonical_service(json!({"check": "x"})),
            json!({"Check": "x"})
        );
    }
}
