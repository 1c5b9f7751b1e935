//! The deployment files under deploy/ pass their ecosystems' validators (hadolint, the
//! Compose Specification schema, the Kubernetes schemas) and every platform container in
//! them starts from a configuration `flotilla config check` accepts, through
//! scripts/deploy-check.sh (its tools installed by `scripts/deploy-check.sh install`, which
//! scripts/test-tools.sh runs; skipped visibly without them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_deployment_files_pass_their_validators_and_config_check() {
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/flotilla/deploy-tools/bin/kubernetes-validate");
    let suite = "deploy files (scripts/deploy-check.sh)";
    if flotilla_testkit::tool_at("kubernetes-validate", &venv, suite).is_none() {
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/deploy-check.sh"))
        .arg("check")
        .env("DEPLOY_CHECK_BIN", env!("CARGO_BIN_EXE_flotilla"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[test]
fn the_deployed_shop_routes_are_the_examples() {
    let deployed = std::fs::read_to_string(repo().join("deploy/config/shop.routes.toml")).unwrap();
    let example = std::fs::read_to_string(repo().join("examples/shop/routes.toml")).unwrap();
    assert!(
        deployed == example,
        "deploy/config/shop.routes.toml differs from examples/shop/routes.toml: copy it again"
    );
}
