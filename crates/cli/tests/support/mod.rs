//! Shared by the binary's black-box tests (each test file uses some of it).
#![allow(dead_code)]

pub(crate) mod saga_shop;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// Routes `/shop/...` to service `shop` (found through discovery), the prefix stripped.
pub(crate) const SHOP_ROUTES: &str = r#"
[[upstreams]]
name = "shop"
service = "shop"

[[routes]]
name = "shop"
prefix = "/shop"
upstream = "shop"
rewrite = { strip_prefix = "/shop" }
"#;

/// The `flotilla` binary with every `FLOTILLA_*` variable of the test environment removed, so
/// a developer's settings cannot leak into a test.
pub(crate) fn flotilla() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two different free ports: both are held while the second is picked, since two calls of
/// [`free_port`] in a row can return the same one (`server.listen` and `gateway.listen` must
/// differ, and `up` refuses to start when they do not).
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

pub(crate) struct Up {
    pub(crate) child: Child,
    pub(crate) api: u16,
    pub(crate) gateway: u16,
}

pub(crate) fn start(data: &Path, routes: &Path) -> Up {
    start_role("up", data, routes, &[])
}

pub(crate) fn start_role(role: &str, data: &Path, routes: &Path, env: &[(&str, &str)]) -> Up {
    // A port picked free can be taken by a parallel test before the child binds it; such a
    // start is retried on fresh ports, any other failed start fails the test with its output.
    for _ in 0..5 {
        let (api, gateway) = two_free_ports();
        let mut child = flotilla()
            .arg(role)
            .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{api}"))
            .env("FLOTILLA_SERVER__DRAIN_DELAY", "0s")
            .env("FLOTILLA_STORAGE__DATA_DIR", data)
            .env("FLOTILLA_GATEWAY__LISTEN", format!("127.0.0.1:{gateway}"))
            .env("FLOTILLA_GATEWAY__ROUTES_FILE", routes)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let ready = lines.by_ref().map_while(Result::ok).any(|line| {
            assert!(!line.contains("ERROR"), "{line}");
            let ready = line.contains("service ready");
            seen.push(line);
            ready
        });
        if ready {
            std::thread::spawn(move || for _ in lines {});
            return Up {
                child,
                api,
                gateway,
            };
        }
        let status = child.wait().unwrap();
        let output = seen.join("\n");
        if !output.to_ascii_lowercase().contains("address in use")
            && !output
                .to_ascii_lowercase()
                .contains("address already in use")
        {
            panic!("`flotilla {role}` exited ({status}) before it was ready:\n{output}");
        }
    }
    panic!("`flotilla {role}` found no free ports in five tries");
}

/// `flotilla up` on API port `api` (fixed, so a restart comes back where services look) with
/// its gateway off and `env` added; returns once it logs that it is ready.
pub(crate) fn up_on(api: u16, data: &Path, env: &[(&str, &str)]) -> Child {
    let mut child = flotilla()
        .arg("up")
        .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{api}"))
        .env("FLOTILLA_SERVER__DRAIN_DELAY", "0s")
        .env("FLOTILLA_STORAGE__DATA_DIR", data)
        .env(
            "FLOTILLA_GATEWAY__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("FLOTILLA_GATEWAY__ENABLED", "false")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flotilla starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    for line in lines.by_ref() {
        if line.expect("utf-8 log").contains("service ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

/// A child process, killed when dropped if it still runs, so a failing test orphans nothing.
pub(crate) struct KilledOnDrop(pub(crate) Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A platform a failing test leaves behind is killed, not orphaned.
impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn stop(mut up: Up) {
    send_signal(up.child.id(), "-TERM");
    assert_eq!(up.child.wait().unwrap().code(), Some(0));
}

/// Sends `signal` (`-TERM`, `-KILL`, ...) to process `pid` with kill(1); fails the test if
/// that fails.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(sent.unwrap().success(), "kill {signal} {pid}");
}

/// Fails the test with the command's stderr unless it exited successfully.
pub(crate) fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `flotilla config check --config <path>`, run to its end.
pub(crate) fn config_check(path: &Path) -> Output {
    flotilla()
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

/// One request on a fresh connection; returns (status, body).
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_as(port, method, path, "application/json", body)
}

/// Like [`http`], with another content type.
pub(crate) fn http_as(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    request(
        port,
        method,
        path,
        &format!("content-type: {content_type}\r\n"),
        body,
    )
}

/// One request on a fresh connection with `headers` (each line ending in CRLF) added;
/// returns (status, body).
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    let status = res[9..12].parse().unwrap();
    let body = res
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Runs an admin command against `up`; panics with its stderr if it fails; its stdout.
pub(crate) fn cli(up: &Up, args: &[&str]) -> String {
    let out = flotilla()
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{}", up.api)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `check` until it holds; fails naming `what` once `within` has passed.
pub(crate) fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let give_up = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < give_up, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` until `done` holds for what it returns, and returns that; fails after a
/// minute, naming `what` and the last value seen.
pub(crate) fn eventually_value<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let last = probe();
        if done(&last) {
            return last;
        }
        assert!(
            Instant::now() < give_up,
            "never happened: {what}; last seen {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Serves `app` on a free port, on a runtime thread that lives as long as the test process;
/// the port.
pub(crate) fn serve(app: axum::Router) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// Registers instance `shop-1` of service `shop` at `port` in the registry on `api`, passing
/// on a TTL check of an hour.
pub(crate) fn register_shop(api: u16, port: u16) {
    let body = json!({
        "id": "shop-1", "name": "shop", "address": "127.0.0.1", "port": port,
        "check": {"type": "ttl", "ttl": "1h"}, "status": "passing",
    });
    let (status, text) = http(api, "POST", "/api/v1/registry/instances", &body.to_string());
    assert!(status == 200 || status == 201, "{status} {text}");
}

/// Pulls up to `max` deliveries of bus group `group` from the API on `api`, waiting up to
/// `wait_ms` for the first; fails the test unless the pull is answered 200.
pub(crate) fn pull(api: u16, group: &str, max: usize, wait_ms: u64) -> Vec<serde_json::Value> {
    let body = json!({ "max": max, "wait_ms": wait_ms }).to_string();
    let path = format!("/api/v1/bus/groups/{group}/pull");
    let (status, text) = http(api, "POST", &path, &body);
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["deliveries"].as_array().unwrap().clone()
}

/// Drops a test's PostgreSQL schema (if it is there) with psql; whether that worked.
pub(crate) fn drop_schema(url: &str, schema: &str) -> bool {
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    Command::new("psql")
        .env("PGOPTIONS", "--client-min-messages=warning")
        .args([url, "-qc", &sql])
        .status()
        .is_ok_and(|s| s.success())
}
