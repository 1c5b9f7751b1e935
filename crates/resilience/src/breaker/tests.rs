use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use flotilla_core::error::Classify;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::BoxError;

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: Some(3),
        failure_rate: None,
        open_duration: Duration::from_secs(10),
        open_multiplier: 2.0,
        half_open_probes: 1,
        ..BreakerConfig::default()
    }
}

/// An upstream answering whatever status the test sets.
fn scripted(
    status: Arc<AtomicU16>,
) -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<()>, BoxError>>,
> + Clone {
    service_fn(move |_req: Request<()>| {
        let s = status.load(Ordering::SeqCst);
        async move {
            let mut r = Response::new(());
            *r.status_mut() = http::StatusCode::from_u16(s)?;
            Ok::<_, BoxError>(r)
        }
    })
}

async fn call<S>(svc: &mut S) -> Result<u16, BoxError>
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    let r = svc.ready().await?.call(Request::new(())).await?;
    Ok(r.status().as_u16())
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_rejects_fast_probes_and_closes() {
    let status = Arc::new(AtomicU16::new(503));
    let breaker = Arc::new(CircuitBreaker::new("users", config(), None));
    let mut events = breaker.subscribe();
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(scripted(status.clone()));

    for _ in 0..3 {
        assert_eq!(call(&mut svc).await.unwrap(), 503);
    }
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(events.try_recv().unwrap().to, State::Open);

    // While open the upstream is not called and the refusal is a 503-class error.
    status.store(200, Ordering::SeqCst);
    let err = call(&mut svc).await.unwrap_err();
    let e = crate::error::find(err.as_ref()).unwrap();
    assert!(matches!(e, Error::CircuitOpen { .. }));
    assert_eq!(e.class().kind.http_status(), 503);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(call(&mut svc).await.unwrap(), 200);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(events.try_recv().unwrap().to, State::HalfOpen);
    assert_eq!(events.try_recv().unwrap().to, State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_for_a_longer_time() {
    let status = Arc::new(AtomicU16::new(500));
    let breaker = Arc::new(CircuitBreaker::new("users", config(), None));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(scripted(status.clone()));
    for _ in 0..3 {
        call(&mut svc).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        call(&mut svc).await.unwrap(),
        500,
        "the probe reaches the upstream"
    );
    assert_eq!(breaker.state(), State::Open);
    // The second open period is twice the first.
    tokio::time::advance(Duration::from_secs(15)).await;
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_the_configured_probes() {
    let breaker = Arc::new(CircuitBreaker::new(
        "users",
        BreakerConfig {
            half_open_probes: 2,
            ..config()
        },
        None,
    ));
    for _ in 0..3 {
        breaker.try_acquire().unwrap().record(true, false);
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let p1 = breaker.try_acquire().unwrap();
    let p2 = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());
    drop(p2); // cancelled: the slot is freed without judging the upstream
    let p3 = breaker.try_acquire().unwrap();
    p1.record(false, false);
    assert_eq!(breaker.state(), State::HalfOpen);
    p3.record(false, false);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_only_after_the_minimum_calls() {
    let cfg = BreakerConfig {
        consecutive_failures: None,
        failure_rate: Some(0.5),
        minimum_calls: 6,
        window: WindowKind::Count(10),
        ..config()
    };
    let breaker = Arc::new(CircuitBreaker::new("users", cfg, None));
    for failure in [true, false, true, false, true] {
        breaker.try_acquire().unwrap().record(failure, false);
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "5 calls are below the minimum"
    );
    breaker.try_acquire().unwrap().record(false, false);
    assert_eq!(breaker.state(), State::Open, "3 of 6 failed: 50%");
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_the_breaker() {
    let cfg = BreakerConfig {
        consecutive_failures: None,
        failure_rate: None,
        slow_call_rate: Some(0.5),
        slow_call_duration: Duration::from_millis(100),
        minimum_calls: 2,
        ..config()
    };
    let breaker = Arc::new(CircuitBreaker::new("users", cfg, None));
    let mut svc =
        CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_r: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, BoxError>(Response::new(()))
        }));
    call(&mut svc).await.unwrap();
    call(&mut svc).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn registry_shares_one_breaker_per_upstream() {
    let reg = Registry::new(None);
    let a = reg.get_or_create("users", &config());
    let b = reg.get_or_create("users", &config());
    let c = reg.get_or_create("orders", &config());
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
}
