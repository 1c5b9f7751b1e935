//! Request-smuggling probes, slowloris, and header/URI limits over raw sockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream that counts the requests it sees, so a probe that "succeeds" in smuggling a
/// second request shows up as an extra count.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    (upstream(router).await, hits)
}

async fn hardened() -> (Running, Arc<AtomicUsize>) {
    let (up, hits) = counting_upstream().await;
    let cfg = format!(
        "[server]\nheader_read_timeout = \"300ms\"\nmax_headers = 20\nmax_uri_bytes = 256\nmax_header_bytes = 8192\n\
         [[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\""
    );
    (gateway(&cfg).await, hits)
}

/// hyper answers CL+TE the other way RFC 9112 §6.1 allows: it frames by Transfer-Encoding
/// alone, drops Content-Length, and closes the connection after the response, so the bytes
/// after the chunked body are never read as a second request.
#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_second_request() {
    let (gw, hits) = hardened().await;
    let probe =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                  0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let out = raw(gw.addr, probe).await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the smuggled request never reaches the upstream"
    );
}

#[tokio::test]
async fn duplicate_or_malformed_content_length_is_refused() {
    let (gw, hits) = hardened().await;
    for probe in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 40\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd",
    ] {
        let out = raw(gw.addr, probe).await;
        assert_eq!(
            first_status(&out),
            400,
            "{}: {out}",
            String::from_utf8_lossy(probe)
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn obsolete_line_folding_is_refused() {
    let (gw, hits) = hardened().await;
    let out = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
    )
    .await;
    assert_eq!(first_status(&out), 400, "{out}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn chunked_bodies_with_bad_chunk_sizes_never_reach_the_upstream_as_two_requests() {
    let (gw, hits) = hardened().await;
    let probe = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                  zz\r\nGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n";
    let out = raw(gw.addr, probe).await;
    assert_eq!(
        out.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {out}"
    );
    assert_eq!(first_status(&out), 400, "{out}");
    assert!(
        hits.load(Ordering::SeqCst) <= 1,
        "at most the outer request is forwarded"
    );
}

#[tokio::test]
async fn too_many_headers_and_long_uris_are_refused() {
    let (gw, _) = hardened().await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    // 30: over the 20 configured, under the parser's ceiling of twice that.
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw(gw.addr, many.as_bytes()).await;
    assert_eq!(first_status(&out), 431, "{out}");
    assert!(out.contains("application/problem+json"), "{out}");
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "a".repeat(400)
    );
    let out = raw(gw.addr, long.as_bytes()).await;
    assert_eq!(first_status(&out), 414, "{out}");
    assert!(out.contains("application/problem+json"), "{out}");
    // 12 KiB of header values: over the 8 KiB configured, under the parser's ceiling.
    let fat = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Fat: {}\r\nConnection: close\r\n\r\n",
        "v".repeat(12 * 1024)
    );
    let out = raw(gw.addr, fat.as_bytes()).await;
    assert_eq!(first_status(&out), 431, "{out}");
    assert!(out.contains("application/problem+json"), "{out}");
    // Past the parser's ceiling the answer is still a 4xx and the connection closes.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Fat: {}\r\n\r\n",
        "v".repeat(64 * 1024)
    );
    let out = raw(gw.addr, huge.as_bytes()).await;
    assert_eq!(first_status(&out), 431, "{out}");
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_after_the_head_timeout() {
    let (gw, hits) = hardened().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    // Trickle a header byte at a time, never finishing the head.
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    assert!(
        closed || read.is_ok(),
        "the gateway must close the connection"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || first_status(&text) == 408, "{text}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_well_formed_keep_alive_pipeline_is_answered_in_order() {
    let (gw, hits) = hardened().await;
    let out = raw(
        gw.addr,
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
