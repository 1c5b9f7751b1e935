//! Saga definition files are read again while `flotilla up` runs: a new version added to the
//! directory is registered and used by new starts, while a file that changes a registered
//! version is refused and the registered one keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{eventually, http, start_role, stop};

fn definition(version: u32, path: &str) -> String {
    format!(
        r#"
name = "order"
version = {version}

[[steps]]
name = "reserve"
retry = {{ max_attempts = 1 }}

[steps.action.http]
service = "shop"
method = "POST"
path = "{path}"
"#
    )
}

fn versions(api: u16) -> Vec<u64> {
    let (_, body) = http(api, "GET", "/api/v1/sagas/definitions", "");
    let defs: Value = serde_json::from_str(&body).unwrap();
    defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_new_definition_version_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("sagas");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(defs.join("order-1.toml"), definition(1, "/v1")).unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let pattern = format!("[{:?}]", defs.join("*.toml").display().to_string());
    let env = [("FLOTILLA_SAGAS__DEFINITIONS", pattern.as_str())];
    let up = start_role("up", &dir.path().join("data"), &routes, &env);
    assert_eq!(versions(up.api), [1]);

    // A changed version 1 is refused (running instances rely on it); version 2 is new.
    std::fs::write(defs.join("order-1.toml"), definition(1, "/changed")).unwrap();
    std::fs::write(defs.join("order-2.toml"), definition(2, "/v2")).unwrap();
    eventually("version 2 is registered", Duration::from_secs(30), || {
        versions(up.api) == [1, 2]
    });
    let (status, text) = http(up.api, "POST", "/api/v1/sagas/order", "{}");
    assert_eq!(status, 201, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, shown) = http(up.api, "GET", &format!("/api/v1/sagas/{id}"), "");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["version"], json!(2), "{shown}");
    let (_, defs_body) = http(up.api, "GET", "/api/v1/sagas/definitions", "");
    assert!(
        defs_body.contains("/v1") && !defs_body.contains("/changed"),
        "{defs_body}"
    );
    stop(up);
}
