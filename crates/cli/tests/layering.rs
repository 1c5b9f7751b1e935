//! Keeps the layering of docs/architecture.md true: reads `cargo metadata` and fails when a
//! crate depends on one it may not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

/// Every crate of the workspace and its layer. A new crate must be added here, so its place in
/// the design is decided on purpose.
fn layer(name: &str) -> Option<u8> {
    Some(match name {
        "flotilla-core" => 0,
        "flotilla-discovery"
        | "flotilla-bus"
        | "flotilla-eventstore"
        | "flotilla-resilience"
        | "flotilla-telemetry"
        | "flotilla-dial" => 1,
        "flotilla-sqlite"
        | "flotilla-postgres"
        | "flotilla-nats"
        | "flotilla-amqp"
        | "flotilla-redis"
        | "flotilla-platform"
        | "flotilla-registry-client" => 2,
        "flotilla-registry" | "flotilla-gateway" | "flotilla-broker" | "flotilla-store"
        | "flotilla-client" | "flotilla" | "flotilla-saga" | "flotilla-dashboard" => 3,
        "flotilla-cli" => 4,
        "flotilla-testkit" | "flotilla-shop" | "flotilla-bench" | "flotilla-simulation" => 9,
        _ => return None,
    })
}

/// L2 crates are backends: only the binary, the SDK (behind features) and tests use them.
fn is_backend(name: &str) -> bool {
    layer(name) == Some(2)
}

/// What `from` may depend on (normal and build dependencies).
fn allowed(from: &str, to: &str) -> Result<(), String> {
    let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
        return Err(format!(
            "{from} -> {to}: a crate is missing from the layer table"
        ));
    };
    if to == "flotilla-testkit" {
        return Err(format!(
            "{from} -> {to}: the test kit is for dev-dependencies only"
        ));
    }
    if lf == 9 {
        return Ok(()); // examples, benches and the test kit sit outside the layers
    }
    if from == "flotilla-cli" && to == "flotilla-shop" {
        // `up --demo` runs the example shop from the binary (the product's top hosting the
        // examples' top), so a fresh clone needs only `flotilla`; the shop itself stays on
        // the public SDK and the saga component.
        return Ok(());
    }
    // Tracing is cross-cutting, like `tracing` itself: every layer above the core may use it.
    let telemetry = to == "flotilla-telemetry" && from != to;
    if lt >= lf && !telemetry && !(lf == 3 && from == "flotilla" && to == "flotilla-client") {
        return Err(format!(
            "{from} (L{lf}) -> {to} (L{lt}): dependencies must point down"
        ));
    }
    if lf == 3 && is_backend(to) && from != "flotilla" {
        return Err(format!(
            "{from} -> {to}: components never depend on a backend"
        ));
    }
    Ok(())
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn every_dependency_between_our_crates_points_down_the_layers() {
    let meta = metadata();
    let ours: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let mut violations = BTreeMap::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let from = pkg["name"].as_str().unwrap();
        if layer(from).is_none() {
            violations.insert(from.to_owned(), "not in the layer table".to_owned());
        }
        for dep in pkg["dependencies"].as_array().unwrap() {
            let to = dep["name"].as_str().unwrap();
            let dev = dep["kind"].as_str() == Some("dev");
            if !ours.iter().any(|o| o == to) || dev {
                continue;
            }
            if let Err(e) = allowed(from, to) {
                violations.insert(format!("{from} -> {to}"), e);
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{violations:#?}"
    );
}

#[test]
fn the_rules_refuse_upward_sideways_and_backend_dependencies() {
    assert!(allowed("flotilla-core", "flotilla-bus").is_err());
    assert!(allowed("flotilla-gateway", "flotilla-registry").is_err());
    assert!(allowed("flotilla-gateway", "flotilla-sqlite").is_err());
    assert!(allowed("flotilla-bus", "flotilla-discovery").is_err());
    assert!(allowed("flotilla-gateway", "flotilla-testkit").is_err());
    assert!(allowed("flotilla-unknown", "flotilla-core").is_err());
    assert!(allowed("flotilla-gateway", "flotilla-resilience").is_ok());
    assert!(allowed("flotilla-cli", "flotilla-sqlite").is_ok());
    assert!(allowed("flotilla", "flotilla-registry-client").is_ok());
}
