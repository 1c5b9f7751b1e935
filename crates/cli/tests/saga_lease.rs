//! `[sagas.lease]` in `flotilla up`: a control plane with a lease opens each saga it starts
//! with its claim, and a lease owner that cannot name a stream stops `config check` naming
//! the setting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::saga_shop::start_with_saga;
use support::{http, stop};

/// One HTTP step on a service nobody registered: the saga turns back, but its opening
/// (with the claim) is written first.
const DEFINITION: &str = r#"
name = "order"
version = 1

[[steps]]
name = "reserve"
retry = { max_attempts = 1 }

[steps.action.http]
service = "shop"
method = "POST"
path = "/reservations"
"#;

#[test]
fn a_control_plane_with_a_lease_claims_the_sagas_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FLOTILLA_SAGAS__LEASE__OWNER", "cp-1"),
        ("FLOTILLA_SAGAS__LEASE__TTL", "2s"),
    ];
    let up = start_with_saga("up", dir.path(), DEFINITION, &env);
    let body = json!({ "id": "leased-1", "data": {} }).to_string();
    let (status, text) = http(up.api, "POST", "/api/v1/sagas/order", &body);
    assert_eq!(status, 201, "{text}");
    let (status, text) = http(up.api, "GET", "/api/v1/sagas/leased-1", "");
    assert_eq!(status, 200, "{text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    let claims: Vec<_> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "SagaClaimed")
        .map(|e| e["event"]["owner"].clone())
        .collect();
    assert_eq!(claims, [json!("cp-1")], "{shown}");
    stop(up);
}

#[test]
fn a_lease_owner_that_cannot_name_a_stream_stops_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flotilla.toml");
    std::fs::write(&config, "[sagas.lease]\nowner = \"control plane 1\"\n").unwrap();
    let out = support::config_check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sagas.lease") && stderr.contains("control plane 1"),
        "{stderr}"
    );
}
