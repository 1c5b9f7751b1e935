//! Unmodified Consul clients — PyPI `py-consul` and npm `consul` — drive the registry over a
//! loopback socket: register with checks, list, health queries, TTL pass and fail, maintenance
//! on and off, a blocking query, deregister. The scripts under `tests/clients/` assert each
//! answer; this test asserts they ran to the end and left the catalog empty.
//!
//! The clients come from their registries through `scripts/consul-clients.sh install`. When
//! they are absent the test is skipped loudly, like a backend suite (a `SKIPPED` line, listed
//! by `scripts/test`), and fails instead when `FLOTILLA_REQUIRE_BACKENDS` is `all` or names
//! `consul-clients`, as CI sets it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::{Options, Registry};

/// The name under which `FLOTILLA_REQUIRE_BACKENDS` can demand these tests.
const SUITE: &str = "consul-clients";

fn clients_dir() -> PathBuf {
    match std::env::var_os("FLOTILLA_CONSUL_CLIENTS_DIR") {
        Some(dir) => dir.into(),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/flotilla/consul-clients")
        }
    }
}

fn required() -> bool {
    std::env::var("FLOTILLA_REQUIRE_BACKENDS").is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|b| b == "all" || b == SUITE)
    })
}

/// `marker` when it exists; otherwise the skip, recorded the way `flotilla_testkit::backend`
/// records one (stderr and `FLOTILLA_SKIP_LOG`), or a failure when the suite is required.
fn installed(test: &str, client: &str, marker: PathBuf) -> Option<PathBuf> {
    if marker.exists() {
        return Some(marker);
    }
    let msg = format!(
        "SKIPPED {test}: the {client} client is not installed at {} (run scripts/consul-clients.sh install)",
        marker.display()
    );
    assert!(
        !required(),
        "{msg}, and FLOTILLA_REQUIRE_BACKENDS requires it"
    );
    eprintln!("{msg}");
    if let Ok(path) = std::env::var("FLOTILLA_SKIP_LOG") {
        use std::io::Write as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{msg}");
        }
    }
    None
}

/// A registry with running checks, served on a loopback port.
async fn serve() -> (Registry, u16, tokio_util::sync::CancellationToken) {
    let (registry, stop) = common::registry(&MemoryCatalogStore::new(), Options::default()).await;
    let (listener, addr) = common::listener().await;
    common::serve(listener, registry.router(), stop.clone());
    (registry, addr.port(), stop)
}

/// Runs `command` (a client script given the port) and asserts it passed every step.
async fn run_client(mut command: Command, done: &str) {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the client script finished within 120 s")
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(done),
        "client script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_registers_checks_watches_maintains_and_deregisters() {
    let test = "consul_clients::py_consul";
    let python = clients_dir().join("venv/bin/python");
    let Some(python) = installed(test, "py-consul", python) else {
        return;
    };
    let (registry, port, stop) = serve().await;
    let mut command = Command::new(python);
    command.arg(script("py_consul.py")).arg(port.to_string());
    run_client(command, "py-consul: all steps passed").await;
    assert!(
        registry.services().is_empty(),
        "the client deregistered all"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_consul_registers_checks_watches_maintains_and_deregisters() {
    let test = "consul_clients::npm_consul";
    let modules = clients_dir().join("node/node_modules");
    let Some(_) = installed(test, "npm consul", modules.join("consul/package.json")) else {
        return;
    };
    let (registry, port, stop) = serve().await;
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", &modules)
        .arg(script("node_consul.js"))
        .arg(port.to_string());
    run_client(command, "npm consul: all steps passed").await;
    assert!(
        registry.services().is_empty(),
        "the client deregistered all"
    );
    stop.cancel();
}
