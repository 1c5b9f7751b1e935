//! Bodies stream through the gateway in both directions with flat memory.
//!
//! One test per file: it reads the process's peak RSS, which other tests would disturb.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::{get as route_get, post};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const CHUNK: usize = 64 * 1024;
const TOTAL_MB: usize = 1024;
const CHUNKS: usize = TOTAL_MB * 1024 * 1024 / CHUNK;

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn big_upstream(received: Arc<AtomicU64>) -> String {
    let router = Router::new()
        .route(
            "/upload",
            post(move |body: AxumBody| {
                let received = received.clone();
                async move {
                    let mut s = body.into_data_stream();
                    while let Some(chunk) = s.next().await {
                        received.fetch_add(chunk.unwrap().len() as u64, Ordering::Relaxed);
                    }
                    "done"
                }
            }),
        )
        .route(
            "/download",
            route_get(|| async {
                let chunk = Bytes::from(vec![7u8; CHUNK]);
                let s = futures_util::stream::iter(
                    (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                AxumBody::from_stream(s)
            }),
        );
    upstream(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_flat_memory() {
    let received = Arc::new(AtomicU64::new(0));
    let up = big_upstream(received.clone()).await;
    let gw = gateway(&format!(
        "[server]\nmax_body_bytes = 0\n[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\ntimeout = \"120s\""
    ))
    .await;
    let before = peak_rss_kb();

    let chunk = Bytes::from(vec![1u8; CHUNK]);
    let frames = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let client = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{}/upload", gw.addr))
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        received.load(Ordering::Relaxed),
        (TOTAL_MB * 1024 * 1024) as u64
    );

    let resp = download(&gw).await;
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            got += d.len() as u64;
        }
    }
    assert_eq!(got, (TOTAL_MB * 1024 * 1024) as u64);

    let growth_mb = (peak_rss_kb().saturating_sub(before)) / 1024;
    eprintln!("streamed {TOTAL_MB} MB up and {TOTAL_MB} MB down; peak RSS grew by {growth_mb} MB");
    assert!(
        growth_mb < 64,
        "peak RSS grew by {growth_mb} MB: bodies are being buffered"
    );
}

async fn download(gw: &Running) -> http::Response<hyper::body::Incoming> {
    let c = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let uri: http::Uri = format!("http://{}/download", gw.addr).parse().unwrap();
    c.get(uri).await.unwrap()
}
