//! The retry policy through a full policy stack, against scripted upstreams.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_resilience::BoxError;
use flotilla_resilience::policy::{PolicySet, Resilience};
use flotilla_resilience::retry::IDEMPOTENCY_KEY;
use http::{Method, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

type Upstream = Arc<dyn Fn(usize) -> Response<()> + Send + Sync>;

/// An upstream that answers call number `n` with `script(n)` and counts calls.
fn scripted(
    script: Upstream,
) -> (
    Arc<AtomicUsize>,
    impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = service_fn(move |_req: Request<()>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let resp = script(n);
        async move { Ok::<_, BoxError>(resp) }
    });
    (calls, svc)
}

fn status(s: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(s).unwrap();
    r
}

fn policies(extra: &str) -> PolicySet {
    let text = format!("[defaults]\ntimeout = \"60s\"\nbreaker = {{ enabled = false }}\n{extra}");
    PolicySet::from_toml(&text).unwrap()
}

fn request(method: Method) -> Request<()> {
    Request::builder()
        .method(method)
        .uri("/x")
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_until_success() {
    let (calls, up) = scripted(Arc::new(|n| status(if n < 2 { 503 } else { 200 })));
    let svc = Resilience::new(None).stack("users", &policies("").resolve("users"), up);
    let r = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), calls.load(Ordering::SeqCst)),
        (200, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_posts_are_not_retried_unless_keyed() {
    let (calls, up) = scripted(Arc::new(|_| status(503)));
    let svc = Resilience::new(None).stack("users", &policies("").resolve("users"), up);
    let r = svc.clone().oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), calls.load(Ordering::SeqCst)),
        (503, 1)
    );

    let mut keyed = request(Method::POST);
    keyed
        .headers_mut()
        .insert(IDEMPOTENCY_KEY, "order-42".parse().unwrap());
    svc.oneshot(keyed).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1 + 3,
        "a keyed POST is retried"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let (calls, up) = scripted(Arc::new(|n| {
        let mut r = status(if n == 0 { 503 } else { 200 });
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        r
    }));
    let svc = Resilience::new(None).stack("users", &policies("").resolve("users"), up);
    let start = Instant::now();
    svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "waited {:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn statuses_not_configured_are_not_retried() {
    let (calls, up) = scripted(Arc::new(|_| status(500)));
    let svc = Resilience::new(None).stack("users", &policies("").resolve("users"), up);
    svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_under_a_sustained_outage() {
    let (calls, up) = scripted(Arc::new(|_| status(503)));
    let p = policies(
        "retry = { max_attempts = 3, base_delay = \"1ms\", max_delay = \"1ms\", budget_ratio = 0.1, budget_min_per_sec = 1, budget_ttl = \"10s\" }",
    );
    let svc = Resilience::new(None).stack("users", &p.resolve("users"), up);
    let requests = 200;
    for _ in 0..requests {
        svc.clone().oneshot(request(Method::GET)).await.unwrap();
    }
    let retries = calls.load(Ordering::SeqCst) - requests;
    // Without a budget this outage would cost 2 retries per request (400). The budget allows
    // 10% of requests plus a reserve of min_per_sec x ttl = 10.
    assert!(retries <= requests / 10 + 10 + 1, "{retries} retries");
    assert!(retries > 0, "the reserve still allows some retries");
}

#[tokio::test(start_paused = true)]
async fn retries_stop_before_the_deadline_would_pass() {
    let (calls, up) = scripted(Arc::new(|_| {
        let mut r = status(503);
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, "5".parse().unwrap());
        r
    }));
    let p = PolicySet::from_toml("[defaults]\ntimeout = \"2s\"").unwrap();
    let svc = Resilience::new(None).stack("users", &p.resolve("users"), up);
    let r = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), calls.load(Ordering::SeqCst)),
        (503, 1)
    );
}
