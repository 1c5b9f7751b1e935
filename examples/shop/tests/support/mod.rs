//! Starts the real `flotilla up` (with the shop's routes file) and the four shop services as
//! separate processes, and talks HTTP to them like curl would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The demo token docs/shop.md prints (HS256, the routes file's demo key, expires in 2100).
pub(crate) const DEMO_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZW1vIiwiaXNzIjoiZmxvdGlsbGEtc2hvcC1kZW1vIiwiZXhwIjo0MTAyNDQ0ODAwfQ.5QK8PidQdVsa23CoRkZn3Bz3LtvGNpz_3Enf8qwJ4YA";

pub(crate) const SERVICES: [&str; 4] = ["users", "inventory", "payments", "orders"];

pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `target/<profile>/flotilla`, next to the `deps` directory holding this test binary. Cargo
/// cannot make a test depend on another package's binary (a dev-dependency needs a library
/// target), so it is brought up to date here with `cargo build -p flotilla-cli` once per
/// test binary; cargo does not hold the build lock while tests run.
fn flotilla_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "flotilla-cli", "--bin", "flotilla"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "cargo build -p flotilla-cli --bin flotilla failed"
        );
    });
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    dir.join(format!("flotilla{}", std::env::consts::EXE_SUFFIX))
}

fn clean(mut cmd: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A platform and the shop's services, killed when dropped.
pub(crate) struct Shop {
    pub(crate) url: String,
    pub(crate) gateway: String,
    pub(crate) ports: Vec<(String, u16)>,
    platform: Child,
    services: Vec<(String, Child)>,
    _data: tempfile::TempDir,
}

impl Shop {
    /// Starts `flotilla up` and the four services, payments declining `failure_rate` of charges;
    /// returns once every service is ready and the gateway routes to each.
    pub(crate) fn start(failure_rate: f64) -> Shop {
        let data = tempfile::tempdir().unwrap();
        let (api, gateway) = (free_port(), free_port());
        let routes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("routes.toml");
        let mut platform = clean(Command::new(flotilla_bin()))
            .arg("up")
            .env("FLOTILLA_SERVER__LISTEN", format!("127.0.0.1:{api}"))
            .env("FLOTILLA_SERVER__DRAIN_DELAY", "0s")
            .env("FLOTILLA_STORAGE__DATA_DIR", data.path())
            .env("FLOTILLA_GATEWAY__LISTEN", format!("127.0.0.1:{gateway}"))
            .env("FLOTILLA_GATEWAY__ROUTES_FILE", &routes)
            .stderr(Stdio::piped())
            .spawn()
            .expect("flotilla up starts (is target/debug/flotilla built?)");
        wait_for_line(&mut platform, "service ready");
        let mut shop = Shop {
            url: format!("http://127.0.0.1:{api}"),
            gateway: format!("http://127.0.0.1:{gateway}"),
            ports: Vec::new(),
            platform,
            services: Vec::new(),
            _data: data,
        };
        for name in SERVICES {
            let port = free_port();
            shop.ports.push((name.to_owned(), port));
            shop.spawn(
                name,
                port,
                &[("PAYMENT_FAILURE_RATE", &failure_rate.to_string())],
            );
        }
        shop
    }

    /// Starts service `name` on `port` with `[shop]` settings (`FLOTILLA_SHOP__<KEY>`).
    fn spawn(&mut self, name: &str, port: u16, shop: &[(&str, &str)]) {
        let child = clean(Command::new(env!("CARGO_BIN_EXE_shop")))
            .arg(name)
            .env("FLOTILLA_PLATFORM__URL", &self.url)
            .env("FLOTILLA_SERVICE__LISTEN", format!("127.0.0.1:{port}"))
            .env("FLOTILLA_SERVICE__DRAIN_DELAY", "0s")
            .envs(
                shop.iter()
                    .map(|(k, v)| (format!("FLOTILLA_SHOP__{k}"), *v)),
            )
            .stdout(self.log(name))
            .stderr(self.log(name))
            .spawn()
            .expect("the shop binary starts");
        self.services.push((name.to_owned(), child));
    }

    /// A service's log file, appended to across restarts; printed when a test fails.
    fn log(&self, name: &str) -> std::fs::File {
        let path = self._data.path().join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        file.expect("the log file opens")
    }

    /// The direct address of a service (bypassing the gateway).
    pub(crate) fn service(&self, name: &str) -> String {
        let port = self.ports.iter().find(|(n, _)| n == name).unwrap().1;
        format!("http://127.0.0.1:{port}")
    }

    /// Stops `name` with SIGTERM and starts it again on the same port with `[shop]` settings.
    pub(crate) async fn restart(&mut self, name: &str, shop: &[(&str, &str)]) {
        let i = self.services.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.services.remove(i);
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
        assert!(child.wait().unwrap().success(), "{name} stops cleanly");
        let port = self.ports.iter().find(|(n, _)| n == name).unwrap().1;
        self.spawn(name, port, shop);
        wait_ready(&self.service(name)).await;
    }

    /// Kills `name` with SIGKILL (no drain, no deregistration) and starts it again on the same
    /// port with `[shop]` settings.
    pub(crate) async fn crash_restart(&mut self, name: &str, shop: &[(&str, &str)]) {
        let i = self.services.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.services.remove(i);
        child.kill().unwrap();
        child.wait().unwrap();
        let port = self.ports.iter().find(|(n, _)| n == name).unwrap().1;
        self.spawn(name, port, shop);
        wait_ready(&self.service(name)).await;
    }

    /// Waits until every service is ready and the gateway routes to each.
    pub(crate) async fn ready(&self) {
        for (name, _) in &self.ports {
            wait_ready(&self.service(name)).await;
        }
        for path in ["/api/products", "/api/orders", "/api/users/none"] {
            let url = format!("{}{path}", self.gateway);
            eventually(|| async {
                let (status, _, _) = call(Method::GET, &url, None, None).await;
                // 404 from the users service itself proves the route reached it.
                status == StatusCode::OK || status == StatusCode::NOT_FOUND
            })
            .await;
        }
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, _) in &self.ports {
                let path = self._data.path().join(format!("{name}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!(
                    "--- {name} log (last lines, newest first) ---\n{}",
                    tail.join("\n")
                );
            }
        }
        let children = self.services.iter_mut().map(|(_, c)| c);
        for child in children.chain([&mut self.platform]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_line(child: &mut Child, needle: &str) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains(needle) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
}

async fn wait_ready(base: &str) {
    let url = format!("{base}/ready");
    eventually(|| async { call(Method::GET, &url, None, None).await.0 == StatusCode::OK }).await;
}

/// Polls `check` every 50 ms until it holds; fails the test after 60 s.
pub(crate) async fn eventually<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < give_up, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request, like `curl -X METHOD URL [-H 'authorization: Bearer TOKEN'] [-d JSON]`.
pub(crate) async fn call(
    method: Method,
    url: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    call_with(method, url, body, token, &[]).await
}

/// [`call`] with extra headers.
pub(crate) async fn call_with(
    method: Method,
    url: &str,
    body: Option<Value>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let Ok(response) = client.request(req.body(Full::new(bytes)).unwrap()).await else {
        return (StatusCode::BAD_GATEWAY, HeaderMap::new(), Value::Null);
    };
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

/// Places an order through the gateway, waiting out the write route's rate limit.
pub(crate) async fn place_order(gateway: &str, user: &str, items: Value) -> String {
    let url = format!("{gateway}/api/orders");
    let body = serde_json::json!({ "user_id": user, "items": items });
    loop {
        let (status, _, order) =
            call(Method::POST, &url, Some(body.clone()), Some(DEMO_TOKEN)).await;
        match status {
            StatusCode::TOO_MANY_REQUESTS => tokio::time::sleep(Duration::from_millis(100)).await,
            StatusCode::ACCEPTED => return order["id"].as_str().unwrap().to_owned(),
            other => panic!("placing an order: {other} {order}"),
        }
    }
}

/// Waits until the order is confirmed or cancelled; answers it.
pub(crate) async fn settled(gateway: &str, id: &str) -> Value {
    let url = format!("{gateway}/api/orders/{id}");
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, order) = call(Method::GET, &url, None, None).await;
        if status == StatusCode::OK && order["status"] != "pending" {
            return order;
        }
        assert!(
            Instant::now() < give_up,
            "order {id} never settled: {order}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
