//! Shared harness: real upstreams (axum on 127.0.0.1:0), a gateway on 127.0.0.1:0, a pooled
//! client and a raw-socket helper for probes hyper's client would refuse to send.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

pub mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use flotilla_discovery::{Discovery, StaticDiscovery};
use flotilla_gateway::{Gateway, GatewayOptions};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Serves `router` on a fresh loopback port; returns its base URL.
pub async fn upstream(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// An upstream that answers every request with a JSON echo of method, path and headers.
pub async fn echo_upstream() -> String {
    upstream(Router::new().fallback(echo)).await
}

async fn echo(req: axum::extract::Request) -> axum::Json<serde_json::Value> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    axum::Json(serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    }))
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub discovery: StaticDiscovery,
    pub shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a gateway from TOML text on a loopback port.
pub async fn gateway(toml: &str) -> Running {
    gateway_with_clock(toml, Arc::new(flotilla_core::SystemClock)).await
}

/// Starts a gateway whose cache reads time from `clock`.
pub async fn gateway_with_clock(toml: &str, clock: Arc<dyn flotilla_core::Clock>) -> Running {
    let opts = GatewayOptions::from_toml(toml).unwrap();
    let discovery = StaticDiscovery::new();
    let d: Arc<dyn Discovery> = Arc::new(discovery.clone());
    let gateway = Gateway::with_clock(opts, d, clock).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (gw, sd) = (gateway.clone(), shutdown.clone());
    tokio::spawn(async move { gw.serve(listener, sd).await.unwrap() });
    Running {
        addr,
        gateway,
        discovery,
        shutdown,
    }
}

/// A pooled HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A collected response.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Sends `req` (URI relative to the gateway) and collects the answer.
pub async fn send(gw: &Running, mut req: http::Request<Full<Bytes>>) -> Resp {
    let uri = format!("http://{}{}", gw.addr, req.uri());
    *req.uri_mut() = uri.parse().unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// GET `path` with extra headers.
pub async fn get(gw: &Running, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(gw, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Writes raw bytes and reads until the server closes or 2 s pass; returns what came back.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in raw HTTP/1.1 output (0 when there is none).
pub fn first_status(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
