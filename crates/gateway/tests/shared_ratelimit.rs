//! Rate limits shared across gateway replicas through the Redis server on this machine, and
//! the failure policy when the shared store is unreachable or silent.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, echo_upstream, get};
use flotilla_discovery::{Discovery, StaticDiscovery};
use flotilla_gateway::{Gateway, GatewayOptions};
use flotilla_redis::{RateLimitOptions, RedisRateLimiter};
use flotilla_resilience::shared_rate_limit::SharedRateLimiter;
use flotilla_testkit::{Backend, backend, unique_name};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One route `api` with `rate_limit` = `limit` (a TOML inline table's inner text).
fn routes(up: &str, limit: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nname = \"api\"\nprefix = \"/\"\nupstream = \"u\"\nrate_limit = {{ {limit} }}"
    )
}

/// A gateway on a loopback port whose shared routes ask `limiter`, waiting at most `timeout`.
async fn replica_waiting(
    toml: &str,
    limiter: Arc<dyn SharedRateLimiter>,
    timeout: Duration,
) -> Running {
    let opts = GatewayOptions::from_toml(toml).unwrap();
    let discovery = StaticDiscovery::new();
    let d: Arc<dyn Discovery> = Arc::new(discovery.clone());
    let gateway = Gateway::builder(opts, d)
        .shared_rate_limiter(limiter, timeout)
        .build()
        .unwrap();
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

/// A replica with the default 50 ms wait: for a store that fails, how long it takes to fail
/// does not change what the test sees.
async fn replica(toml: &str, limiter: Arc<dyn SharedRateLimiter>) -> Running {
    replica_waiting(toml, limiter, Duration::from_millis(50)).await
}

/// A replica that waits long enough for a slow machine's first connection to Redis, so a
/// working store is never mistaken for a failing one.
async fn patient_replica(toml: &str, limiter: Arc<dyn SharedRateLimiter>) -> Running {
    replica_waiting(toml, limiter, Duration::from_secs(10)).await
}

fn redis_limiter(url: &str) -> Arc<dyn SharedRateLimiter> {
    redis_limiter_at(url, &unique_name("gwrl"))
}

/// A limiter with its own connection, keeping keys under `prefix`: replicas that share a
/// prefix share budgets.
fn redis_limiter_at(url: &str, prefix: &str) -> Arc<dyn SharedRateLimiter> {
    let opts = RateLimitOptions {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
        ..RateLimitOptions::default()
    };
    Arc::new(RedisRateLimiter::new(&opts).unwrap())
}

/// A limiter pointed at a port nothing listens on.
async fn unreachable_limiter() -> Arc<dyn SharedRateLimiter> {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    redis_limiter(&format!("redis://127.0.0.1:{port}"))
}

fn header<'a>(r: &'a common::Resp, name: &str) -> &'a str {
    r.headers[name].to_str().unwrap()
}

fn metrics_text(gw: &Running) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    gw.gateway.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn two_replicas_sharing_a_per_day_limit_admit_the_quota_once_in_total() {
    let Some(url) = backend(Backend::Redis, "gateway shared rate limits") else {
        return;
    };
    let up = echo_upstream().await;
    let toml = routes(&up, "requests = 4, per = \"day\", shared = true");
    // Two limiters (two connections), as two processes would have, on one prefix.
    let prefix = unique_name("gwrl");
    let (a, b) = (
        patient_replica(&toml, redis_limiter_at(&url, &prefix)).await,
        patient_replica(&toml, redis_limiter_at(&url, &prefix)).await,
    );
    for (i, left) in [3, 2, 1, 0].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = get(gw, "/x", &[]).await;
        assert_eq!(r.status, 200, "request {i} within the shared quota");
        assert_eq!(header(&r, "ratelimit"), format!("\"route\";r={left};t=0"));
        assert_eq!(header(&r, "ratelimit-policy"), "\"route\";q=4;w=86400");
    }
    for gw in [&a, &b, &a, &b] {
        let r = get(gw, "/x", &[]).await;
        assert_eq!(r.status, 429, "the quota is shared, not per replica");
        assert_eq!(header(&r, "content-type"), "application/problem+json");
        // One request every 6 h; the wait is what the shared store computed.
        let retry: u64 = header(&r, "retry-after").parse().unwrap();
        assert!((21_500..=21_600).contains(&retry), "retry-after {retry}");
        assert_eq!(header(&r, "ratelimit"), format!("\"route\";r=0;t={retry}"));
    }
    let text = metrics_text(&a);
    assert!(
        text.contains(
            "gateway_rate_limit_shared_fallbacks_total{route=\"api\",policy=\"local\"} 0"
        ),
        "no fallback while the store answers: {text}"
    );
}

#[tokio::test]
async fn callers_keep_separate_shared_budgets() {
    let Some(url) = backend(Backend::Redis, "gateway shared rate limits") else {
        return;
    };
    let up = echo_upstream().await;
    let toml = routes(
        &up,
        "requests = 1, per = \"hour\", key = \"header:x-tenant\", shared = true",
    );
    let limiter = redis_limiter(&url);
    let (a, b) = (
        patient_replica(&toml, limiter.clone()).await,
        patient_replica(&toml, limiter).await,
    );
    assert_eq!(get(&a, "/", &[("x-tenant", "t1")]).await.status, 200);
    assert_eq!(get(&b, "/", &[("x-tenant", "t2")]).await.status, 200);
    assert_eq!(get(&b, "/", &[("x-tenant", "t1")]).await.status, 429);
    assert_eq!(get(&a, "/", &[("x-tenant", "t2")]).await.status, 429);
}

#[tokio::test]
async fn unreachable_store_with_local_policy_limits_in_memory_and_counts_fallbacks() {
    let up = echo_upstream().await;
    let toml = routes(&up, "requests = 2, per = \"day\", shared = true");
    let gw = replica(&toml, unreachable_limiter().await).await;
    let statuses = [
        get(&gw, "/", &[]).await,
        get(&gw, "/", &[]).await,
        get(&gw, "/", &[]).await,
    ];
    assert_eq!(statuses.each_ref().map(|r| r.status), [200, 200, 429]);
    assert_eq!(header(&statuses[1], "ratelimit"), "\"route\";r=0;t=0");
    let text = metrics_text(&gw);
    assert!(
        text.contains(
            "gateway_rate_limit_shared_fallbacks_total{route=\"api\",policy=\"local\"} 3"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_store_with_allow_policy_admits_without_ratelimit_headers() {
    let up = echo_upstream().await;
    let toml = routes(
        &up,
        "requests = 1, per = \"day\", shared = true, on_shared_failure = \"allow\"",
    );
    let gw = replica(&toml, unreachable_limiter().await).await;
    for _ in 0..3 {
        let r = get(&gw, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn unreachable_store_with_deny_policy_answers_503_without_internals() {
    let up = echo_upstream().await;
    let toml = routes(
        &up,
        "requests = 100, per = \"day\", shared = true, on_shared_failure = \"deny\"",
    );
    let gw = replica(&toml, unreachable_limiter().await).await;
    let r = get(&gw, "/", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(header(&r, "content-type"), "application/problem+json");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !body.contains("127.0.0.1") && !body.contains("Redis"),
        "{body}"
    );
}

#[tokio::test]
async fn a_store_that_never_answers_falls_back_after_the_timeout() {
    // Accepts connections and never replies: only the gateway's timeout ends the wait.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let up = echo_upstream().await;
    let toml = routes(&up, "requests = 1, per = \"day\", shared = true");
    let gw = replica(&toml, redis_limiter(&format!("redis://127.0.0.1:{port}"))).await;
    assert_eq!(get(&gw, "/", &[]).await.status, 200);
    assert_eq!(get(&gw, "/", &[]).await.status, 429);
}

#[tokio::test]
async fn a_shared_route_without_a_shared_limiter_is_refused_by_name() {
    let toml = routes(
        "http://127.0.0.1:9",
        "requests = 1, per = \"day\", shared = true",
    );
    let opts = GatewayOptions::from_toml(&toml).unwrap();
    let d: Arc<dyn Discovery> = Arc::new(StaticDiscovery::new());
    let e = Gateway::new(opts, d).unwrap_err().to_string();
    assert!(e.contains("\"api\" rate_limit.shared"), "{e}");
}
