//! `server.max_requests_per_connection` on both protocols: HTTP/1.1 gets `Connection: close`,
//! HTTP/2 a graceful GOAWAY once the cap is reached.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

async fn capped() -> Running {
    let up = echo_upstream().await;
    gateway(&format!(
        "[server]\nmax_requests_per_connection = 2\n\
         [[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    ))
    .await
}

#[tokio::test]
async fn an_http2_connection_gets_goaway_after_the_cap_and_its_requests_finish() {
    let gw = capped().await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for i in 0..2 {
        let req = http::Request::get(format!("http://a/{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "request {i} under the cap is served");
    }
    // The server's GOAWAY ends the connection once its last stream is done: the client's
    // connection task returns on its own.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(
        ended.is_ok(),
        "the gateway never closed the capped HTTP/2 connection"
    );
    let third = http::Request::get("http://a/2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(
        send.send_request(third).await.is_err(),
        "no stream after GOAWAY"
    );
}

#[tokio::test]
async fn an_http1_connection_is_closed_after_the_cap() {
    let gw = capped().await;
    let out = raw(
        gw.addr,
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.contains("connection: close"), "{out}");
}
