//! The gateway on worker threads (`Gateway::serve_workers`): every worker serves, a reload
//! reaches all of them, metrics and the cache are shared, and shutdown drains requests in
//! flight before `serve_workers` returns.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get as get_route;
use common::*;
use flotilla_discovery::{Discovery, StaticDiscovery};
use flotilla_gateway::{Gateway, GatewayOptions, WorkerListeners};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 3;

fn options(up: &str, extra_route_keys: &str) -> GatewayOptions {
    GatewayOptions::from_toml(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"u\"\n{extra_route_keys}"
    ))
    .unwrap()
}

/// A gateway serving on `WORKERS` worker threads; the task resolves when they have all
/// drained.
fn start(
    opts: GatewayOptions,
) -> (
    Gateway,
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let d: Arc<dyn Discovery> = Arc::new(StaticDiscovery::new());
    let gateway = Gateway::new(opts, d).unwrap();
    let listeners = WorkerListeners::bind("127.0.0.1:0".parse().unwrap(), WORKERS).unwrap();
    assert_eq!(listeners.workers(), WORKERS);
    let addr = listeners.local_addr();
    assert_ne!(
        addr.port(),
        0,
        "port 0 resolved to one port for every worker"
    );
    let shutdown = CancellationToken::new();
    let (gw, sd) = (gateway.clone(), shutdown.clone());
    let serving = tokio::spawn(async move { gw.serve_workers(listeners, sd).await.unwrap() });
    (gateway, addr, shutdown, serving)
}

/// A GET on a connection of its own (so the kernel may hand it to any worker).
async fn get_fresh(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn workers_serve_one_table_that_a_reload_swaps_for_all() {
    let up = echo_upstream().await;
    let (gateway, addr, shutdown, serving) = start(options(&up, ""));
    for i in 0..30 {
        let out = get_fresh(addr, &format!("/before/{i}")).await;
        assert_eq!(first_status(&out), 200, "{out}");
        assert!(!out.contains("x-reloaded"), "{out}");
    }
    gateway
        .reload(options(
            &up,
            "response_headers = { set = { \"x-reloaded\" = \"yes\" } }",
        ))
        .unwrap();
    // Every later connection, whichever worker accepts it, routes by the new table.
    for i in 0..30 {
        let out = get_fresh(addr, &format!("/after/{i}")).await;
        assert_eq!(first_status(&out), 200, "{out}");
        assert!(
            out.to_ascii_lowercase().contains("x-reloaded: yes"),
            "{out}"
        );
    }
    // One set of metrics counts what every worker served.
    let mut registry = prometheus_client::registry::Registry::default();
    gateway.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("gateway_requests_total{route=\"r\",class=\"2xx\"} 60"),
        "{text}"
    );
    shutdown.cancel();
    serving.await.unwrap();
    // Stopped: the workers' sockets are closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn workers_share_one_response_cache() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let up = upstream(Router::new().route(
        "/c",
        get_route(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move { format!("answer {n}") }
        }),
    ))
    .await;
    let (_gateway, addr, shutdown, serving) = start(options(
        &up,
        "cache = { enabled = true, default_ttl = \"60s\" }",
    ));
    let first = get_fresh(addr, "/c").await;
    assert!(first.ends_with("answer 1"), "{first}");
    for _ in 0..20 {
        let out = get_fresh(addr, "/c").await;
        assert!(out.ends_with("answer 1"), "{out}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one fetch for every worker");
    shutdown.cancel();
    serving.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_before_the_workers_stop() {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (a, r) = (arrived.clone(), release.clone());
    let up = upstream(Router::new().route(
        "/slow",
        get_route(move || {
            let (a, r) = (a.clone(), r.clone());
            async move {
                a.notify_one();
                r.notified().await;
                "done"
            }
        }),
    ))
    .await;
    let (_gateway, addr, shutdown, serving) = start(options(&up, ""));
    let request = tokio::spawn(async move { get_fresh(addr, "/slow").await });
    arrived.notified().await;
    shutdown.cancel();
    assert!(!serving.is_finished(), "a request is still in flight");
    release.notify_one();
    let out = request.await.unwrap();
    assert_eq!(first_status(&out), 200, "{out}");
    assert!(out.ends_with("done"), "{out}");
    serving.await.unwrap();
}

#[test]
fn a_taken_address_fails_the_bind_before_any_worker_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    // The holder did not set SO_REUSEPORT, so the address cannot be shared with it.
    assert!(WorkerListeners::bind(addr, 2).is_err());
}

#[tokio::test]
async fn a_taken_address_is_an_error_when_bound_from_inside_a_runtime() {
    // `flotilla gateway` binds from inside its runtime; the error must come back as an error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert!(WorkerListeners::bind(addr, 2).is_err());
}
