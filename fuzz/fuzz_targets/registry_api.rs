//! The registry's HTTP API, native and Consul-compatible, on any method, path and body: every
//! answer is a client error or a success, never a 5xx or a panic.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::{Options, Registry};
use http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        Registry::new(Options::default(), Arc::new(MemoryCatalogStore::new()))
            .await
            .expect("a registry on memory")
    })
});

const METHODS: [&str; 4] = ["GET", "PUT", "POST", "DELETE"];

// First byte: the method; up to the first newline: the path and query; the rest: the body.
fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let Ok(target) = std::str::from_utf8(&rest[..cut]) else {
        return;
    };
    let body = rest.get(cut + 1..).unwrap_or_default().to_vec();
    let Ok(request) = Request::builder()
        .method(METHODS[usize::from(m) % METHODS.len()])
        .uri(target)
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return;
    };
    // A blocking query (`?index=&wait=`) may rightly hold its answer: give up on it after a
    // moment rather than wait the minutes a client may ask for.
    let router = REGISTRY.router();
    let answer = RUNTIME.block_on(async {
        let call = router.oneshot(request);
        tokio::time::timeout(Duration::from_millis(200), call).await
    });
    if let Ok(response) = answer {
        let status = response.expect("infallible").status();
        assert!(!status.is_server_error(), "{status} for {target}");
    }
});
