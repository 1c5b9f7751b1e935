//! `flotilla up` end to end: the registry, the gateway routing through it, the bus and the
//! event store on embedded storage, the admin commands, and the catalog surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{cli, flotilla, free_port, http, start, start_role, stop};

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

/// A keep-alive HTTP/1.1 upstream that answers every request `200 users`.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve_upstream(conn));
        }
    });
    port
}

fn serve_upstream(conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        let mut saw_request = false;
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line == "\r\n" {
                saw_request = true;
                break;
            }
            line.clear();
        }
        if !saw_request
            || out
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nusers")
                .is_err()
        {
            return;
        }
    }
}

#[test]
fn the_platform_routes_through_the_registry_and_keeps_its_catalog_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "[[upstreams]]\nname = \"users\"\nservice = \"users\"\n\n[[routes]]\nprefix = \"/users\"\nupstream = \"users\"\n").unwrap();
    let port = upstream();
    let up = start(&dir.path().join("data"), &routes);

    let (status, _) = http(up.gateway, "GET", "/users/1", "");
    assert_eq!(status, 503, "no instance registered yet");
    let reg =
        format!(r#"{{"name":"users","address":"127.0.0.1","port":{port},"version":"1.0.0"}}"#);
    let (status, body) = http(up.api, "POST", "/api/v1/registry/instances", &reg);
    assert!(status == 200 || status == 201, "{status} {body}");
    assert_eq!(
        http(up.gateway, "GET", "/users/1", ""),
        (200, "users".into())
    );

    assert!(cli(&up, &["services", "ls"]).contains("users"));
    cli(
        &up,
        &[
            "events",
            "publish",
            "orders.created",
            "--type",
            "com.example.order.created",
            "--data",
            r#"{"id":1}"#,
        ],
    );
    assert!(cli(&up, &["topics", "ls"]).contains("orders.created"));
    let (status, body) = http(
        up.api,
        "POST",
        "/api/v1/streams/order-1",
        r#"{"events":[{"type":"OrderPlaced","data":{"items":2}}]}"#,
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    assert!(cli(&up, &["streams", "read", "order-1"]).contains("OrderPlaced"));
    let (status, body) = http(up.api, "GET", "/api/v1/platform", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/api/v1/streams"), "{body}");
    stop(up);

    let up = start(&dir.path().join("data"), &routes);
    assert!(
        cli(&up, &["services", "show", "users"]).contains(&port.to_string()),
        "the catalog survived"
    );
    stop(up);
}

#[test]
fn admin_commands_report_an_unreachable_control_plane_clearly() {
    let port = free_port();
    let out = flotilla()
        .args([
            "services",
            "ls",
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the control plane"));
}

#[test]
fn a_bad_event_payload_is_refused_before_sending() {
    let out = flotilla()
        .args([
            "events",
            "publish",
            "orders.created",
            "--type",
            "t",
            "--data",
            "{nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
}

#[test]
fn the_registry_role_runs_the_registry_alone_with_its_consul_api() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let up = start_role("registry", &dir.path().join("data"), &routes, &[]);
    let reg = r#"{"Name":"users","ID":"users-1","Address":"127.0.0.1","Port":9999}"#;
    let (status, body) = http(up.api, "PUT", "/v1/agent/service/register", reg);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(up.api, "GET", "/v1/health/service/users?passing", "");
    assert_eq!(status, 200);
    assert!(body.contains("users-1"), "{body}");
    assert_eq!(
        http(up.api, "GET", "/api/v1/bus/topics", "").0,
        404,
        "no bus in the registry role"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", up.gateway)).is_err(),
        "no gateway in the registry role"
    );
    stop(up);
}

#[test]
fn with_a_token_writes_to_the_bus_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let token = [("FLOTILLA_REGISTRY__TOKEN", "s3cret")];
    let up = start_role("up", &dir.path().join("data"), &routes, &token);
    let api = up.api;
    let event = r#"{"specversion":"1.0","id":"1","source":"/t","type":"t"}"#;
    assert_eq!(
        http(up.api, "POST", "/api/v1/bus/topics/orders/events", event).0,
        401
    );
    assert_eq!(http(up.api, "GET", "/api/v1/bus/topics", "").0, 200);
    let out = flotilla()
        .args([
            "events",
            "publish",
            "orders",
            "--type",
            "t",
            "--url",
            &format!("http://127.0.0.1:{api}"),
            "--token",
            "s3cret",
        ])
        .output()
        .unwrap();
    support::assert_success(&out);
    stop(up);
}

/// A supervisor that sends SIGTERM the moment it reads "service ready" gets a graceful
/// shutdown (exit 0, database checkpointed), not death by the signal's default action: the
/// handlers are installed before that line is logged. Before the fix 11 of 40 such stops died.
#[test]
fn sigterm_right_after_ready_is_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    for _ in 0..10 {
        stop(start_role("up", &dir.path().join("data"), &routes, &[]));
    }
}
