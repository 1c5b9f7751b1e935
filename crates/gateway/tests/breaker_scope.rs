//! One failing dependency of a service must not cut off the service's other routes: the
//! breaker counts the gateway's own failures, not the service's answers.
#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get as route_get;
use common::*;

/// The only instance of `orders`: `/orders/{id}/owner` needs the `users` service, which is
/// down, so it answers 503; `/orders/{id}` needs nothing else and answers 200.
async fn orders() -> String {
    upstream(
        Router::new()
            .route(
                "/orders/{id}/owner",
                route_get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "users is unavailable") }),
            )
            .route("/orders/{id}", route_get(|| async { "an order" })),
    )
    .await
}

fn config(url: &str, extra: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"orders\"\nurls = [\"{url}\"]\nbreaker_failures = 3\n\
         breaker_open_for = \"1h\"\n{extra}\n\
         [[routes]]\nprefix = \"/orders\"\nupstream = \"orders\"\n"
    )
}

#[tokio::test]
async fn a_route_whose_dependency_is_down_leaves_the_other_routes_to_the_same_instance_working() {
    let gw = gateway(&config(&orders().await, "")).await;
    for _ in 0..10 {
        let r = get(&gw, "/orders/1/owner", &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "users is unavailable",
            "the service's own answer, passed through, not the gateway's breaker"
        );
    }
    let r = get(&gw, "/orders/1", &[]).await;
    assert_eq!((r.status, r.body.as_ref()), (200, b"an order".as_ref()));
}

#[tokio::test]
async fn listed_statuses_do_open_the_breaker() {
    let gw = gateway(&config(&orders().await, "breaker_statuses = [503]")).await;
    for _ in 0..3 {
        assert_eq!(get(&gw, "/orders/1/owner", &[]).await.status, 503);
    }
    let r = get(&gw, "/orders/1", &[]).await;
    assert_eq!(r.status, 503, "opted in: the instance is refused");
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn clients_sending_malformed_bodies_cannot_open_the_breaker_for_everyone() {
    let gw = gateway(&config(&orders().await, "")).await;
    let probe = b"POST /orders/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                  zz\r\n0\r\n\r\n";
    for _ in 0..5 {
        let out = raw(gw.addr, probe).await;
        assert_eq!(first_status(&out), 400, "the client's fault: {out}");
    }
    let r = get(&gw, "/orders/1", &[]).await;
    assert_eq!((r.status, r.body.as_ref()), (200, b"an order".as_ref()));
}
