//! Resilience benchmarks (see bench/resilience/README.md and docs/BENCHMARKS.md):
//! - `policy_stack`: per-call cost of the full policy stack (rate limit, timeout, retry,
//!   breaker, bulkhead, attempt timeout) over a no-op service, next to the bare no-op service;
//! - `client_throughput`: `ServiceClient` against a bare hyper-util client, same local server,
//!   same run, 256 requests per iteration with 32 in flight.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_client::{PolicySet, ServiceClient};
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::StaticDiscovery;
use flotilla_resilience::BoxError;
use flotilla_resilience::policy::Resilience;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tower::{ServiceExt, service_fn};

const FULL_POLICY: &str = r#"
[defaults]
timeout = "10s"
attempt_timeout = "5s"
retry = { max_attempts = 3 }
breaker = { consecutive_failures = 5 }
bulkhead = { max_concurrent = 10000, max_queue = 100 }
rate_limit = { per_second = 1000000000, burst = 1000000000 }
"#;

fn noop()
-> impl tower::Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_r: Request<()>| std::future::ready(Ok::<_, BoxError>(Response::new(()))))
}

fn policy_stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = PolicySet::from_toml(FULL_POLICY).unwrap().resolve("users");
    let stack = {
        let _guard = rt.enter();
        Resilience::new(None).stack("users", &policy, noop())
    };
    let mut g = c.benchmark_group("policy_stack");
    g.bench_function("bare_noop", |b| {
        b.to_async(&rt).iter(|| noop().oneshot(Request::new(())))
    });
    g.bench_function("full_stack", |b| {
        b.to_async(&rt)
            .iter(|| stack.clone().oneshot(Request::new(())))
    });
    g.finish();
}

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/users/{id}",
        axum::routing::get(|| async { "{\"id\":42}" }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

const BATCH: usize = 256;
const IN_FLIGHT: usize = 32;
const PER_TASK: usize = BATCH / IN_FLIGHT;

async fn run_batch<F, Fut>(call: Arc<F>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let call = call.clone();

        set.spawn(async move {
            for _ in 0..PER_TASK {
                call().await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

fn client_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(server());
    let bare: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url: http::Uri = format!("http://{addr}/users/42").parse().unwrap();
    let bare_call = Arc::new(move || {
        let (bare, url) = (bare.clone(), url.clone());
        async move {
            let resp = bare.get(url).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 9);
        }
    });
    let discovery = StaticDiscovery::new();
    let name = ServiceName::new("users").unwrap();
    discovery.set_passing(
        &name,
        vec![ServiceInstance::new(
            name.clone(),
            addr.ip().to_string(),
            addr.port(),
        )],
    );
    let client = ServiceClient::builder(Arc::new(discovery))
        .policies(PolicySet::from_toml(FULL_POLICY).unwrap())
        .build();
    let client_call = Arc::new(move || {
        let client = client.clone();
        async move {
            let resp = client
                .service("users")
                .get("/users/42")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.body.len(), 9);
        }
    });
    let mut g = c.benchmark_group("client_throughput");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("bare_hyper_util", |b| {
        b.to_async(&rt).iter(|| run_batch(bare_call.clone()))
    });
    g.bench_function("service_client", |b| {
        b.to_async(&rt).iter(|| run_batch(client_call.clone()))
    });
    g.finish();
}

criterion_group!(benches, policy_stack, client_throughput);
criterion_main!(benches);
