//! `flotilla store`: the event store's HTTP API alone, on the embedded SQLite engine and on
//! the PostgreSQL server of this machine (skipped visibly without one). Events appended
//! through its API are read back through it, with expected versions enforced; SIGTERM drains
//! and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use flotilla_testkit::unique_name;
use serde_json::{Value, json};
use support::{Up, http, start_role, stop};

fn start_store(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Up {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    start_role("store", &dir.path().join("data"), &routes, env)
}

/// Appends two events to a fresh stream, refuses a third at a stale expected version, and
/// reads the two back in order.
fn append_and_read(store: &Up) {
    let stream = unique_name("order");
    let path = format!("/api/v1/streams/{stream}");
    for (n, expected) in [(1, "no-stream"), (2, "1")] {
        let body = json!({"expected_version": expected, "events": [{"type": "OrderPlaced", "data": {"n": n}}]});
        let (status, text) = http(store.api, "POST", &path, &body.to_string());
        assert_eq!(status, 201, "{text}");
    }
    let stale =
        json!({"expected_version": "1", "events": [{"type": "OrderPlaced", "data": {"n": 3}}]});
    let (status, text) = http(store.api, "POST", &path, &stale.to_string());
    assert_eq!(status, 409, "{text}");
    let (status, text) = http(store.api, "GET", &path, "");
    assert_eq!(status, 200, "{text}");
    let read: Value = serde_json::from_str(&text).unwrap();
    let data: Vec<i64> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(data, [1, 2]);
}

fn assert_serves_probes(store: &Up) {
    assert_eq!(http(store.api, "GET", "/health", "").0, 200);
    assert_eq!(http(store.api, "GET", "/ready", "").0, 200);
    let (_, metrics) = http(store.api, "GET", "/metrics", "");
    assert!(metrics.contains("flotilla_eventstore"), "{metrics}");
    let suite = "store role /metrics (promtool)";
    if let Some(verdict) = flotilla_testkit::prometheus::promtool_check(&metrics, suite) {
        verdict.unwrap();
    }
}

/// `flotilla probe URL`'s exit code: what a container health check sees.
fn probe(url: &str) -> Option<i32> {
    support::flotilla()
        .args(["probe", url])
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn the_store_role_appends_and_reads_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = start_store(&dir, &[]);
    append_and_read(&store);
    assert_serves_probes(&store);
    let ready = format!("http://127.0.0.1:{}/ready", store.api);
    assert_eq!(probe(&ready), Some(0));
    let missing = format!("http://127.0.0.1:{}/no-such-page", store.api);
    assert_eq!(probe(&missing), Some(1));
    stop(store);
    assert_eq!(probe(&ready), Some(1), "nothing answers after the stop");
    assert!(dir.path().join("data/flotilla.db").exists());
}

#[cfg(feature = "postgres")]
#[test]
fn the_store_role_appends_and_reads_on_postgres() {
    use flotilla_testkit::{Backend, backend};
    let Some(url) = backend(Backend::Postgres, "flotilla store on PostgreSQL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = unique_name("cli_store");
    let _schema = Schema {
        url: url.clone(),
        name: schema.clone(),
    };
    let env = [
        ("FLOTILLA_EVENTSTORE__KIND", "postgres"),
        ("FLOTILLA_EVENTSTORE__URL", url.as_str()),
        ("FLOTILLA_EVENTSTORE__SCHEMA", schema.as_str()),
    ];
    let store = start_store(&dir, &env);
    append_and_read(&store);
    assert_serves_probes(&store);
    stop(store);
    // A store on PostgreSQL keeps nothing on local disk.
    assert!(!dir.path().join("data/flotilla.db").exists());
}

/// The test's PostgreSQL schema, dropped when the test ends, passed or failed.
#[cfg(feature = "postgres")]
struct Schema {
    url: String,
    name: String,
}

#[cfg(feature = "postgres")]
impl Drop for Schema {
    fn drop(&mut self) {
        if !support::drop_schema(&self.url, &self.name) {
            eprintln!("schema {} was left behind", self.name);
        }
    }
}
