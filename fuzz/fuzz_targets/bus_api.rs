//! The bus HTTP API (the broker's routes over the in-memory backend) on any method, path,
//! headers and body: every answer is a client error or a success, never a 5xx or a panic.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use flotilla_broker::Broker;
use flotilla_bus::MemoryBackend;
use http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

static BROKER: LazyLock<Broker> = LazyLock::new(|| {
    Broker::new(Default::default(), Arc::new(MemoryBackend::new())).expect("default options")
});

const METHODS: [&str; 4] = ["GET", "PUT", "POST", "DELETE"];
const TYPES: [&str; 5] = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "text/plain",
    "application/octet-stream",
];

// First byte: method and content type; then the path and query up to a newline; then
// `name: value` header lines up to an empty line; the rest is the body.
fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.splitn(2, |b| *b == b'\n');
    let Ok(target) = std::str::from_utf8(lines.next().unwrap_or_default()) else {
        return;
    };
    let mut rest = lines.next().unwrap_or_default();
    let mut builder = Request::builder()
        .method(METHODS[usize::from(m) % METHODS.len()])
        .uri(target)
        .header("content-type", TYPES[usize::from(m >> 2) % TYPES.len()]);
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            break;
        };
        builder = builder.header(&line[..colon], &line[colon + 1..]);
    }
    let Ok(request) = builder.body(Body::from(rest.to_vec())) else {
        return;
    };
    // Pulls and event streams may rightly hold their answer: give up on them after a moment.
    let router = BROKER.router();
    let answer = RUNTIME.block_on(async {
        tokio::time::timeout(Duration::from_millis(200), router.oneshot(request)).await
    });
    if let Ok(response) = answer {
        let status = response.expect("infallible").status();
        assert!(!status.is_server_error(), "{status} for {target}");
    }
});
