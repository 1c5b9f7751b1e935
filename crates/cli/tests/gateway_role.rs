//! `flotilla gateway`: the gateway alone, its upstreams discovered in a separately started
//! `flotilla registry`. It is not ready until the registry has answered about every upstream
//! service, routes to an instance registered there, stops routing to it once it is
//! deregistered, and exits 0 after draining on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use axum::routing::get;
use support::{
    SHOP_ROUTES, Up, eventually_value, free_port, http, register_shop, serve, start_role, stop,
};

/// Holds `GET /slow` until the test lets it answer, telling the test when it arrived.
struct Gate {
    arrived: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
}

/// An upstream answering `GET /hello` at once and `GET /slow` when `gate` opens, on a port
/// of its own.
fn upstream_with(gate: Option<Arc<Gate>>) -> u16 {
    let slow = move || async move {
        let Some(gate) = gate else {
            return "no gate";
        };
        tokio::task::spawn_blocking(move || {
            gate.arrived.lock().unwrap().send(()).unwrap();
            gate.go.lock().unwrap().recv().unwrap();
        })
        .await
        .unwrap();
        "answered while draining"
    };
    serve(
        axum::Router::new()
            .route("/hello", get(|| async { "hello from the shop" }))
            .route("/slow", get(slow)),
    )
}

fn upstream() -> u16 {
    upstream_with(None)
}

fn start_gateway(dir: &Path, registry_port: u16) -> Up {
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, SHOP_ROUTES).unwrap();
    let registry = format!("http://127.0.0.1:{registry_port}");
    let env = [("FLOTILLA_DISCOVERY__REGISTRY_URL", registry.as_str())];
    start_role("gateway", &dir.join("gateway"), &routes, &env)
}

#[test]
fn the_gateway_role_routes_through_a_separate_registry_and_follows_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let registry_port = free_port();
    let gateway = start_gateway(dir.path(), registry_port);
    // No registry answers yet: not ready, and saying which service it waits for.
    let (status, body) = http(gateway.api, "GET", "/ready", "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("waiting_for_registry") && body.contains("shop"),
        "{body}"
    );

    // The registry listens where the gateway was told to look (`Up::api` is not that port).
    let listen = format!("127.0.0.1:{registry_port}");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let registry = start_role(
        "registry",
        &dir.path().join("registry"),
        &empty,
        &[("FLOTILLA_SERVER__LISTEN", listen.as_str())],
    );
    register_shop(registry_port, upstream());
    let (status, body) = eventually_value(
        "the gateway routes to the registered instance",
        || http(gateway.gateway, "GET", "/shop/hello", ""),
        |(status, _)| *status == 200,
    );
    assert_eq!((status, body.as_str()), (200, "hello from the shop"));
    assert_eq!(http(gateway.api, "GET", "/ready", "").0, 200);

    let (status, text) = http(
        registry_port,
        "DELETE",
        "/api/v1/registry/services/shop/instances/shop-1",
        "",
    );
    assert!((200..300).contains(&status), "{status} {text}");
    let (status, body) = eventually_value(
        "the gateway stops routing to the deregistered instance",
        || http(gateway.gateway, "GET", "/shop/hello", ""),
        |(status, _)| *status != 200,
    );
    assert_eq!(status, 503, "{body}");

    let (status, routes) = http(gateway.api, "GET", "/api/v1/gateway/routes", "");
    assert_eq!(status, 200, "{routes}");
    assert!(routes.contains("\"shop\""), "{routes}");
    let (_, metrics) = http(gateway.api, "GET", "/metrics", "");
    assert!(metrics.contains("gateway_"), "{metrics}");
    let suite = "gateway role /metrics (promtool)";
    if let Some(verdict) = flotilla_testkit::prometheus::promtool_check(&metrics, suite) {
        verdict.unwrap();
    }
    stop(gateway);
    stop(registry);
}

#[test]
fn on_sigterm_the_gateway_role_finishes_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let registry = start_role("registry", &dir.path().join("registry"), &empty, &[]);
    let (arrived, arrivals) = mpsc::channel();
    let (release, go) = mpsc::channel();
    let gate = Arc::new(Gate {
        arrived: Mutex::new(arrived),
        go: Mutex::new(go),
    });
    register_shop(registry.api, upstream_with(Some(gate)));
    let mut gateway = start_gateway(dir.path(), registry.api);
    eventually_value(
        "the gateway routes to the registered instance",
        || http(gateway.gateway, "GET", "/shop/hello", "").0,
        |status| *status == 200,
    );
    let port = gateway.gateway;
    let in_flight = std::thread::spawn(move || http(port, "GET", "/shop/slow", ""));
    arrivals.recv().unwrap();
    support::send_signal(gateway.child.id(), "-TERM");
    // Draining: the admin listener closes while the request is still held upstream.
    eventually_value(
        "the gateway stops accepting on its admin listener",
        || std::net::TcpStream::connect(("127.0.0.1", gateway.api)).is_err(),
        |refused| *refused,
    );
    release.send(()).unwrap();
    let (status, body) = in_flight.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "answered while draining"));
    assert_eq!(gateway.child.wait().unwrap().code(), Some(0));
    stop(registry);
}

#[test]
fn the_gateway_role_refuses_a_registry_url_that_is_not_http() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::flotilla()
        .arg("gateway")
        .env("FLOTILLA_DISCOVERY__REGISTRY_URL", "registry:4400")
        .env("FLOTILLA_STORAGE__DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("discovery.registry_url") && stderr.contains("registry:4400"),
        "{stderr}"
    );
}

#[test]
fn without_a_registry_the_gateway_role_serves_static_upstreams_and_reloads_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!("http://127.0.0.1:{}", upstream());
    let routes = dir.path().join("routes.toml");
    let route = |name: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"u\"\n\
             rewrite = {{ strip_prefix = \"/{name}\" }}\n"
        )
    };
    let upstreams = format!("[[upstreams]]\nname = \"u\"\nurls = [\"{upstream}\"]\n\n");
    std::fs::write(&routes, format!("{upstreams}{}", route("one"))).unwrap();
    let gateway = start_role("gateway", &dir.path().join("gateway"), &routes, &[]);
    // Nothing to wait for: static upstreams need no registry.
    assert_eq!(http(gateway.api, "GET", "/ready", "").0, 200);
    assert_eq!(http(gateway.gateway, "GET", "/one/hello", "").0, 200);
    assert_eq!(http(gateway.gateway, "GET", "/two/hello", "").0, 404);

    let both = format!("{upstreams}{}\n{}", route("one"), route("two"));
    std::fs::write(&routes, both).unwrap();
    let (status, body) = eventually_value(
        "the rewritten routes file is loaded",
        || http(gateway.gateway, "GET", "/two/hello", ""),
        |(status, _)| *status == 200,
    );
    assert_eq!((status, body.as_str()), (200, "hello from the shop"));
    stop(gateway);
}

/// Two gateway roles configured with one Redis share a route's quota (as `up` does,
/// crates/cli/tests/shared_rate_limits.rs).
#[cfg(feature = "redis")]
#[test]
fn two_gateway_roles_share_their_rate_limits_on_redis() {
    use flotilla_testkit::{Backend, backend, unique_name};
    let Some(url) = backend(Backend::Redis, "flotilla gateway shared rate limits") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    let upstream = format!("http://127.0.0.1:{}", upstream());
    std::fs::write(
        &routes,
        format!(
            "[[upstreams]]\nname = \"u\"\nurls = [\"{upstream}\"]\n\n[[routes]]\nname = \"api\"\n\
             prefix = \"/\"\nupstream = \"u\"\nrate_limit = {{ requests = 3, per = \"day\", shared = true }}\n"
        ),
    )
    .unwrap();
    let prefix = unique_name("cli_gw_rl");
    let env = [
        ("FLOTILLA_GATEWAY__SHARED_RATE_LIMITS__URL", url.as_str()),
        (
            "FLOTILLA_GATEWAY__SHARED_RATE_LIMITS__PREFIX",
            prefix.as_str(),
        ),
    ];
    let a = start_role("gateway", &dir.path().join("a"), &routes, &env);
    let b = start_role("gateway", &dir.path().join("b"), &routes, &env);
    let statuses: Vec<u16> = [&a, &b, &a, &b, &a, &b]
        .iter()
        .map(|gw| http(gw.gateway, "GET", "/hello", "").0)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    stop(a);
    stop(b);
}
