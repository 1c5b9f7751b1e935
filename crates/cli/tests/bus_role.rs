//! `flotilla bus`: the event bus's HTTP API alone, on the embedded SQLite engine and on the
//! NATS JetStream server of this machine (skipped visibly without one). Events published
//! through its API are pulled and acknowledged through it; SIGTERM drains and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use flotilla_testkit::unique_name;
use serde_json::{Value, json};
use support::{Up, http, http_as, start_role, stop};

fn start_bus(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Up {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let mut env = env.to_vec();
    env.push(("FLOTILLA_BUS__API__LAG_REFRESH_MS", "50"));
    start_role("bus", &dir.path().join("data"), &routes, &env)
}

/// Declares a group on `topic`, publishes two events, sees them as the group's lag on
/// `/metrics`, pulls both, acknowledges them, and finds nothing left to pull.
fn publish_and_pull(bus: &Up, topic: &str) {
    let group = unique_name("g");
    let declare = json!({ "pattern": topic }).to_string();
    let (status, text) = http(
        bus.api,
        "PUT",
        &format!("/api/v1/bus/groups/{group}"),
        &declare,
    );
    assert_eq!(status, 204, "{text}");
    for id in ["e1", "e2"] {
        let event = json!({"specversion": "1.0", "id": id, "source": "/test", "type": "t", "data": {"id": id}});
        let (status, text) = http_as(
            bus.api,
            "POST",
            &format!("/api/v1/bus/topics/{topic}/events"),
            "application/cloudevents+json",
            &event.to_string(),
        );
        assert_eq!(status, 200, "{text}");
    }
    let lag = format!("flotilla_bus_consumer_lag{{group=\"{group}\"}} 2");
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = http(bus.api, "GET", "/metrics", "").1;
        if metrics.contains(&lag) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(metrics.contains(&lag), "{metrics}");
    let suite = "bus role /metrics (promtool)";
    if let Some(verdict) = flotilla_testkit::prometheus::promtool_check(&metrics, suite) {
        verdict.unwrap();
    }
    let pulled = pull(bus, &group, 5_000);
    let ids: Vec<&str> = pulled
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e1", "e2"]);
    for d in &pulled {
        let ack = json!({ "receipt": d["receipt"] }).to_string();
        let (status, text) = http(
            bus.api,
            "POST",
            &format!("/api/v1/bus/groups/{group}/ack"),
            &ack,
        );
        assert_eq!(status, 204, "{text}");
    }
    assert!(
        pull(bus, &group, 0).is_empty(),
        "acknowledged events came back"
    );
    let (status, text) = http(
        bus.api,
        "DELETE",
        &format!("/api/v1/bus/groups/{group}"),
        "",
    );
    assert!((200..300).contains(&status), "{status} {text}");
}

fn pull(bus: &Up, group: &str, wait_ms: u64) -> Vec<Value> {
    support::pull(bus.api, group, 10, wait_ms)
}

fn assert_serves_probes(bus: &Up, backend: &str) {
    assert_eq!(http(bus.api, "GET", "/health", "").0, 200);
    assert_eq!(http(bus.api, "GET", "/ready", "").0, 200);
    let (_, info) = http(bus.api, "GET", "/api/v1/bus", "");
    assert!(info.contains(backend), "{info}");
}

#[test]
fn the_bus_role_publishes_and_pulls_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let bus = start_bus(&dir, &[]);
    assert_serves_probes(&bus, "sqlite");
    publish_and_pull(&bus, "orders.placed");
    stop(bus);
    assert!(dir.path().join("data/flotilla.db").exists());
}

#[cfg(feature = "nats")]
#[test]
fn the_bus_role_publishes_and_pulls_on_nats() {
    use flotilla_testkit::{Backend, backend};
    let Some(url) = backend(Backend::Nats, "flotilla bus on NATS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_name("cli_bus");
    let _stream = Stream {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let env = [
        ("FLOTILLA_BUS__KIND", "nats"),
        ("FLOTILLA_BUS__URL", url.as_str()),
        ("FLOTILLA_BUS__PREFIX", prefix.as_str()),
    ];
    let bus = start_bus(&dir, &env);
    assert_serves_probes(&bus, "nats");
    publish_and_pull(&bus, "orders.placed");
    stop(bus);
    // A bus on NATS keeps nothing on local disk.
    assert!(!dir.path().join("data/flotilla.db").exists());
}

/// The JetStream stream of a bus (named after its prefix), deleted when the test ends,
/// passed or failed, through the JetStream API spoken in the plain NATS protocol so the test
/// needs no client library.
#[cfg(feature = "nats")]
struct Stream {
    url: String,
    prefix: String,
}

#[cfg(feature = "nats")]
impl Drop for Stream {
    fn drop(&mut self) {
        let prefix = &self.prefix;
        let request = format!(
            "CONNECT {{\"verbose\":false}}\r\nPUB $JS.API.STREAM.DELETE.{prefix} 0\r\n\r\nPING\r\n"
        );
        let answered =
            TcpStream::connect(self.url.trim_start_matches("nats://")).is_ok_and(|mut conn| {
                conn.write_all(request.as_bytes()).is_ok()
                    && BufReader::new(conn)
                        .lines()
                        .map_while(Result::ok)
                        .any(|line| line == "PONG")
            });
        if !answered {
            eprintln!("stream {prefix} was left behind");
        }
    }
}
