//! The web dashboard in a real browser: a headless Chromium, driven by Python Selenium through
//! Debian's chromedriver (both installed by `scripts/test-tools.sh install`), against the real
//! `flotilla up` with services, gateway traffic, events and a dead letter. The checks
//! themselves are in `tests/dashboard/browser.py`; screenshots of every page are saved in
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/` (docs/dashboard.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::{Up, http, http_as, start_role};

const SUITE: &str = "dashboard browser test";

/// Chromium, its driver and the Selenium interpreter, or `None` (a recorded skip).
fn browser_tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = std::env::var_os("FLOTILLA_SELENIUM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/flotilla/selenium"));
    let chromium = flotilla_testkit::tool("chromium", SUITE)?;
    let driver = flotilla_testkit::tool("chromedriver", SUITE)?;
    let python = flotilla_testkit::tool_at("selenium", &venv.join("bin/python"), SUITE)?;
    Some((chromium, driver, python))
}

/// An upstream for the gateway's `/users` route: answers every request with 200.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    port
}

/// Reserves with `users` (which answers), then charges with `payments` (which does not), once
/// each: the saga ends compensated.
const SAGA: &str = r#"
name = "place-order"
version = 1

[[steps]]
name = "reserve"
timeout = "2s"
retry = { max_attempts = 1 }
[steps.action.http]
service = "users"
method = "POST"
path = "/reservations"
[steps.compensation.http]
service = "users"
method = "DELETE"
path = "/reservations/{{steps.reserve.key}}"

[[steps]]
name = "charge"
timeout = "2s"
retry = { max_attempts = 1 }
[steps.action.http]
service = "payments"
method = "POST"
path = "/charges"
"#;

/// `name-1`, passing, on a TTL check the browser script keeps alive with heartbeats.
fn register(up: &Up, name: &str, port: u16) {
    let body = json!({
        "id": format!("{name}-1"), "name": name, "address": "127.0.0.1", "port": port,
        "version": "1.2.0", "tags": ["v1"], "metadata": {"zone": "a"},
        "check": {"type": "ttl", "ttl": "5s"}, "status": "passing",
    });
    let (status, text) = http(
        up.api,
        "POST",
        "/api/v1/registry/instances",
        &body.to_string(),
    );
    assert!(status == 200 || status == 201, "{status} {text}");
}

/// Publishes `poison-1` and `poison-2` to group `g`, pulls them and rejects both, so the DLQ
/// holds two entries. `token` is sent when the control plane has one.
fn dead_letters(up: &Up, token: Option<&str>) {
    let declare = json!({"pattern": "poison.>"}).to_string();
    let json_type = "application/json";
    let (status, text) = send(
        up,
        "PUT",
        "/api/v1/bus/groups/g",
        json_type,
        &declare,
        token,
    );
    assert_eq!(status, 204, "{text}");
    for id in ["poison-1", "poison-2"] {
        let event = json!({"specversion": "1.0", "id": id, "source": "/test", "type": "poison.a",
            "data": {"id": id}});
        let path = "/api/v1/bus/topics/poison.a/events";
        let ce = "application/cloudevents+json";
        let (status, text) = send(up, "POST", path, ce, &event.to_string(), token);
        assert_eq!(status, 200, "{text}");
    }
    let pull = json!({"max": 2, "wait_ms": 0}).to_string();
    let (_, body) = send(
        up,
        "POST",
        "/api/v1/bus/groups/g/pull",
        json_type,
        &pull,
        token,
    );
    let pulled: Value = serde_json::from_str(&body).unwrap();
    let deliveries = pulled["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{body}");
    for d in deliveries {
        let reject = json!({"receipt": d["receipt"], "reason": "poison"}).to_string();
        let path = "/api/v1/bus/groups/g/reject";
        assert_eq!(send(up, "POST", path, json_type, &reject, token).0, 204);
    }
}

/// One request, with `Authorization: Bearer <token>` when given; (status, body).
fn send(
    up: &Up,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let Some(token) = token else {
        return http_as(up.api, method, path, content_type, body);
    };
    let headers = format!("authorization: Bearer {token}\r\ncontent-type: {content_type}\r\n");
    support::request(up.api, method, path, &headers, body)
}

/// Runs tests/dashboard/browser.py against `up` with `extra` arguments; panics with its output
/// when a check fails.
fn browse(up: &Up, tools: (PathBuf, PathBuf, PathBuf), shots: &std::path::Path, extra: &[&str]) {
    let (chromium, driver, python) = tools;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/browser.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--api", &format!("http://127.0.0.1:{}", up.api)])
        .args(["--gateway", &format!("http://127.0.0.1:{}", up.gateway)])
        .arg("--chromium")
        .arg(chromium)
        .arg("--driver")
        .arg(driver)
        .arg("--shots")
        .arg(shots)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

#[test]
fn every_page_works_in_a_real_browser_and_follows_the_platform_live() {
    let Some(tools) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[upstreams]]\nname = \"users\"\nservice = \"users\"\n\n\
         [[routes]]\nname = \"users\"\nprefix = \"/users\"\nupstream = \"users\"\n",
    )
    .unwrap();
    let saga = dir.path().join("place-order.toml");
    std::fs::write(&saga, SAGA).unwrap();
    let definitions = format!("[{:?}]", saga.display().to_string());
    let env = [("FLOTILLA_SAGAS__DEFINITIONS", definitions.as_str())];
    let up = start_role("up", &dir.path().join("data"), &routes, &env);
    register(&up, "users", upstream());
    register(&up, "orders", upstream());
    // Nothing listens there: the saga's `charge` step fails and `reserve` is compensated.
    register(&up, "payments", support::free_port());
    dead_letters(&up, None);
    let start = json!({"data": {"order_id": "o-1"}}).to_string();
    let (status, text) = http(up.api, "POST", "/api/v1/sagas/place-order", &start);
    assert!(status == 200 || status == 201, "{status} {text}");

    let shots = screenshots();
    // Only this run's pictures: a stale one could pass for the page as it is now.
    let pages = ["overview", "services", "gateway", "bus", "events", "sagas"];
    for page in pages {
        let _ = std::fs::remove_file(shots.join(format!("{page}.png")));
    }
    browse(&up, tools, &shots, &[]);
    for page in pages {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
    support::stop(up);
}

#[test]
fn a_write_asks_for_the_token_once_and_the_tab_keeps_it() {
    let Some(tools) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let token = "s3cret-dashboard-token";
    let env = [("FLOTILLA_REGISTRY__TOKEN", token)];
    let up = start_role("up", &dir.path().join("data"), &routes, &env);
    dead_letters(&up, Some(token));
    browse(&up, tools, &screenshots(), &["--token", token]);
    support::stop(up);
}

/// The response head (status line and headers, lower-cased) and body of `GET path`.
fn get_raw(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    let (head, body) = res.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn both_roles_serve_the_dashboard_at_ui_with_its_security_headers() {
    for role in ["up", "registry"] {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.toml");
        std::fs::write(&routes, "").unwrap();
        let up = start_role(role, &dir.path().join("data"), &routes, &[]);

        let (head, _) = get_raw(up.api, "/ui");
        assert!(head.starts_with("http/1.1 307"), "{role}: {head}");
        assert!(head.contains("\r\nlocation: /ui/\r\n"), "{role}: {head}");
        let (head, body) = get_raw(up.api, "/ui/");
        assert!(head.starts_with("http/1.1 200"), "{role}: {head}");
        assert!(
            head.contains("content-security-policy: default-src 'self'"),
            "{role}: {head}"
        );
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{role}: {head}"
        );
        assert!(body.contains("app.js"), "{role}: {body}");
        let (_, platform) = http(up.api, "GET", "/api/v1/platform", "");
        let platform: Value = serde_json::from_str(&platform).unwrap();
        assert_eq!(platform["dashboard"], "/ui/", "{role}: {platform}");
        support::stop(up);
    }
}
