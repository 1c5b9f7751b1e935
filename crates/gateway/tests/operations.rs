//! Hot reload under load, WebSocket pass-through, metrics and the admin API.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use flotilla_gateway::GatewayOptions;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn cfg(up: &str, rewrite: &str) -> GatewayOptions {
    GatewayOptions::from_toml(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"u\"\nrewrite = {{ replace_prefix = \"{rewrite}\" }}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_load_fails_no_request() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let uri: http::Uri = format!("http://{}/x", gw.addr).parse().unwrap();
        workers.push(tokio::spawn(async move {
            let c =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Empty<bytes::Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                match c.get(uri.clone()).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..200 {
        let prefix = if i % 2 == 0 { "/a" } else { "/b" };
        gw.gateway.reload(cfg(&up, prefix)).unwrap();
        if i % 10 == 0 {
            // An invalid config is refused and the current one keeps serving.
            let mut bad = cfg(&up, "/c");
            bad.routes[0].upstream = "missing".into();
            assert!(gw.gateway.reload(bad).is_err());
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 200, "load actually ran");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

/// An upstream that accepts any upgrade and echoes bytes back.
async fn upgrade_echo() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let svc = service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(on.await.unwrap());
                    let mut buf = [0u8; 64];
                    let n = io.read(&mut buf).await.unwrap();
                    io.write_all(&buf[..n]).await.unwrap();
                });
                let resp = http::Response::builder()
                    .status(101)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            });
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc);
                let _ = conn.with_upgrades().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn websocket_upgrades_pass_through_both_ways() {
    let up = upgrade_echo().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    s.write_all(b"ping-frame").await.unwrap();
    let mut echoed = [0u8; 10];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping-frame");
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_status_class() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nname = \"users\"\nprefix = \"/users\"\nupstream = \"u\""
    ))
    .await;
    get(&gw, "/users/1", &[]).await;
    get(&gw, "/users/2", &[]).await;
    get(&gw, "/nope", &[]).await;
    let mut registry = prometheus_client::registry::Registry::default();
    gw.gateway.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    flotilla_testkit::prometheus::parse(&text).unwrap();
    assert!(
        text.contains("gateway_requests_total{route=\"users\",class=\"2xx\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("gateway_requests_total{route=\"_none\",class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gateway_upstream_duration_seconds_count{route=\"users\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn the_admin_api_lists_routes_in_precedence_order_and_reloads() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nname = \"catch\"\nprefix = \"/\"\nupstream = \"u\"\n\
         [[routes]]\nname = \"exact\"\npath = \"/x\"\nupstream = \"u\""
    ))
    .await;
    let admin = gw.gateway.admin_router();
    let call = |req: http::Request<axum::body::Body>| {
        let admin = admin.clone();
        async move {
            let resp = tower::ServiceExt::oneshot(admin, req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (_, v) = call(
        http::Request::get("/routes")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(v["routes"][0]["name"], "exact");
    assert_eq!(v["routes"][1]["name"], "catch");
    let bad = serde_json::json!({"routes": [{"prefix": "/", "upstream": "nope"}]});
    let (status, v) = call(
        http::Request::post("/reload")
            .body(axum::body::Body::from(bad.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["detail"].as_str().unwrap().contains("routes[0].upstream"),
        "{v}"
    );
    assert_eq!(
        get(&gw, "/x", &[]).await.status,
        200,
        "old config still serves"
    );
}

#[tokio::test]
async fn h2c_clients_are_proxied_to_http1_upstreams() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    ))
    .await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{}/h2?q=1", gw.addr).parse().unwrap();
    let resp = c.get(uri).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["uri"], "/h2?q=1");
    assert_eq!(v["headers"]["via"], "2 flotilla");
}

#[tokio::test]
async fn a_changed_config_file_is_reloaded_and_a_broken_one_refused() {
    // The reload runs on a blocking thread: only the process-wide capture sees its lines.
    let logs = flotilla_testkit::logs::CapturedLogs::global();
    let up = echo_upstream().await;
    let dir = std::env::temp_dir().join(flotilla_testkit::unique_name("gw_reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    let write = |prefix: &str| {
        let text = format!(
            "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"u\"\nrewrite = {{ replace_prefix = \"{prefix}\" }}"
        );
        std::fs::write(&path, text).unwrap();
    };
    write("/one");
    let gw = gateway(&std::fs::read_to_string(&path).unwrap()).await;
    let watcher = tokio::spawn({
        let (g, p, s) = (gw.gateway.clone(), path.clone(), gw.shutdown.clone());
        async move {
            g.watch_config(p, std::time::Duration::from_millis(20), s)
                .await
        }
    });
    assert_eq!(get(&gw, "/x", &[]).await.json()["uri"], "/one/x");
    // Different length, so the change is seen even within the filesystem's mtime granularity.
    write("/second");
    let mut seen = String::new();
    for _ in 0..200 {
        seen = get(&gw, "/x", &[]).await.json()["uri"]
            .as_str()
            .unwrap()
            .to_owned();
        if seen == "/second/x" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen, "/second/x");
    std::fs::write(&path, "[[routes]]\nprefix = \"/\"\nupstream = \"missing\"").unwrap();
    // Wait for the refusal itself (the watcher's log line for this file), so the check
    // below cannot pass merely because the watcher had not looked at the file yet.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let path = path.display().to_string();
        while !logs.contents().lines().any(|l| {
            l.contains("gateway config refused") && l.contains(&path) && l.contains("missing")
        }) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    assert!(refused.await.is_ok(), "the broken file was never refused");
    assert_eq!(
        get(&gw, "/x", &[]).await.json()["uri"],
        "/second/x",
        "broken file refused"
    );
    gw.shutdown.cancel();
    watcher.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
