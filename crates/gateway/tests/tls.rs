//! TLS at both ends: the HTTPS listener (ALPN h2 / http/1.1, certificate reload, config
//! errors) and HTTPS upstreams (private CA, unknown CA, SNI override, discovered instances).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::pki::{Ca, Pair, self_signed, tls_connect, tls_upstream, write_temp};
use common::*;
use flotilla_discovery::{Discovery, StaticDiscovery};
use flotilla_gateway::{Error, Gateway, GatewayOptions};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn listener_config(pair: &Pair, up: &str) -> String {
    let (cert, key) = pair.files();
    format!(
        r#"
        [server.tls]
        cert_file = "{cert}"
        key_file = "{key}"
        [[upstreams]]
        name = "echo"
        urls = ["{up}"]
        [[routes]]
        prefix = "/"
        upstream = "echo"
        "#
    )
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn https_listener_negotiates_h2_by_alpn_and_proxies_http2() {
    let pair = self_signed(&["localhost"]);
    let gw = gateway(&listener_config(&pair, &echo_upstream().await)).await;
    let tls = tls_connect(gw.addr, &pair.cert_pem, "localhost", &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/over/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, echo) = collect(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(echo["uri"], "/over/h2");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echo["headers"]["via"], "2 flotilla");
}

#[tokio::test]
async fn https_listener_serves_http1_to_clients_that_offer_only_http1() {
    let pair = self_signed(&["localhost"]);
    let gw = gateway(&listener_config(&pair, &echo_upstream().await)).await;
    let tls = tls_connect(gw.addr, &pair.cert_pem, "localhost", &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/over/h1")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, echo) = collect(send.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(echo["uri"], "/over/h1");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_reload_swaps_the_listener_certificate_without_a_restart() {
    let (old, new) = (self_signed(&["localhost"]), self_signed(&["localhost"]));
    let up = echo_upstream().await;
    let gw = gateway(&listener_config(&old, &up)).await;
    tls_connect(gw.addr, &old.cert_pem, "localhost", &[b"http/1.1"]).await;
    gw.gateway
        .reload(GatewayOptions::from_toml(&listener_config(&new, &up)).unwrap())
        .unwrap();
    // The client trusts only the new certificate: the handshake succeeds only if it is served.
    let tls = tls_connect(gw.addr, &new.cert_pem, "localhost", &[b"http/1.1"]).await;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let want = rustls_pki_types::pem::PemObject::from_pem_slice(new.cert_pem.as_bytes()).unwrap();
    assert_eq!(served, want);
}

fn build(toml: &str) -> Result<Gateway, Error> {
    let d: Arc<dyn Discovery> = Arc::new(StaticDiscovery::new());
    Gateway::new(GatewayOptions::from_toml(toml)?, d)
}

fn err_key(r: Result<Gateway, Error>) -> String {
    match r.unwrap_err() {
        Error::Config { key, .. } => key,
        other => panic!("expected a config error, got {other}"),
    }
}

#[tokio::test]
async fn bad_certificate_or_key_files_are_config_errors_naming_the_key() {
    let pair = self_signed(&["localhost"]);
    let other = self_signed(&["localhost"]);
    let (cert, key) = pair.files();
    let (_, other_key) = other.files();
    let garbage = write_temp("garbage.pem", "not a pem file");
    let cfg = |c: &str, k: &str| format!("[server.tls]\ncert_file = \"{c}\"\nkey_file = \"{k}\"");
    assert_eq!(
        err_key(build(&cfg("/nonexistent/cert.pem", &key))),
        "server.tls.cert_file"
    );
    assert_eq!(err_key(build(&cfg(&garbage, &key))), "server.tls.cert_file");
    assert_eq!(
        err_key(build(&cfg(&cert, "/nonexistent/key.pem"))),
        "server.tls.key_file"
    );
    assert_eq!(err_key(build(&cfg(&cert, &garbage))), "server.tls.key_file");
    assert_eq!(
        err_key(build(&cfg(&cert, &other_key))),
        "server.tls.key_file"
    );
    assert!(build(&cfg(&cert, &key)).is_ok());
}

#[tokio::test]
async fn a_reload_with_a_bad_certificate_is_refused_and_the_old_one_kept() {
    let pair = self_signed(&["localhost"]);
    let up = echo_upstream().await;
    let gw = gateway(&listener_config(&pair, &up)).await;
    let bad = listener_config(&pair, &up).replace("cert.pem", "missing.pem");
    let err = gw
        .gateway
        .reload(GatewayOptions::from_toml(&bad).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("server.tls.cert_file"), "{err}");
    tls_connect(gw.addr, &pair.cert_pem, "localhost", &[b"http/1.1"]).await;
}

async fn https_route(upstream_toml: &str) -> Running {
    gateway(&format!(
        r#"
        {upstream_toml}
        [[routes]]
        prefix = "/"
        upstream = "secure"
        "#
    ))
    .await
}

#[tokio::test]
async fn an_https_upstream_signed_by_a_configured_private_ca_is_proxied() {
    let ca = Ca::new();
    let port = tls_upstream(
        axum::Router::new().fallback(|| async { "secret" }),
        &ca.leaf(&["localhost"]),
    )
    .await;
    let ca_file = write_temp("ca.pem", &ca.cert_pem);
    let gw = https_route(&format!(
        "[[upstreams]]\nname = \"secure\"\nurls = [\"https://localhost:{port}\"]\ntls = {{ ca_file = \"{ca_file}\" }}"
    ))
    .await;
    let r = get(&gw, "/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "secret");
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_gets_502_problem() {
    let ca = Ca::new();
    let port = tls_upstream(
        axum::Router::new().fallback(|| async { "secret" }),
        &ca.leaf(&["localhost"]),
    )
    .await;
    let gw = https_route(&format!(
        "[[upstreams]]\nname = \"secure\"\nurls = [\"https://localhost:{port}\"]"
    ))
    .await;
    let r = get(&gw, "/x", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("certificate"),
        "no internals leak"
    );
}

#[tokio::test]
async fn server_name_overrides_the_name_verified_in_the_upstream_certificate() {
    let ca = Ca::new();
    let port = tls_upstream(
        axum::Router::new().fallback(|| async { "internal" }),
        &ca.leaf(&["orders.internal"]),
    )
    .await;
    let ca_file = write_temp("ca.pem", &ca.cert_pem);
    let upstream = |name: &str| {
        format!(
            "[[upstreams]]\nname = \"secure\"\nurls = [\"https://127.0.0.1:{port}\"]\n\
             tls = {{ ca_file = \"{ca_file}\", server_name = \"{name}\" }}"
        )
    };
    let gw = https_route(&upstream("orders.internal")).await;
    assert_eq!(get(&gw, "/x", &[]).await.status, 200);
    let gw = https_route(&upstream("billing.internal")).await;
    assert_eq!(get(&gw, "/x", &[]).await.status, 502);
}

#[tokio::test]
async fn discovered_instances_with_scheme_https_are_reached_over_tls() {
    let ca = Ca::new();
    let port = tls_upstream(
        axum::Router::new().fallback(|| async { "discovered" }),
        &ca.leaf(&["127.0.0.1"]),
    )
    .await;
    let ca_file = write_temp("ca.pem", &ca.cert_pem);
    let gw = https_route(&format!(
        "[[upstreams]]\nname = \"secure\"\nservice = \"orders\"\ntls = {{ ca_file = \"{ca_file}\" }}"
    ))
    .await;
    let svc = flotilla_core::ServiceName::new("orders").unwrap();
    let mut inst = flotilla_core::ServiceInstance::new(svc.clone(), "127.0.0.1", port);
    inst.scheme = flotilla_core::Scheme::Https;
    gw.discovery.set_passing(&svc, vec![inst]);
    let r = get(&gw, "/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "discovered");
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let pair = self_signed(&["localhost"]);
    let cfg = listener_config(&pair, &echo_upstream().await).replace(
        "[server.tls]",
        "[server]\nheader_read_timeout = \"200ms\"\n[server.tls]",
    );
    let gw = gateway(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Send nothing: the server must close the connection by itself (the outer bound only
    // keeps a broken build from hanging).
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("the gateway closes a silent TLS connection");
    assert!(read.is_ok_and(|n| n == 0), "closed without a byte sent");
}
