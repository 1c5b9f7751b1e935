//! CORS per route: preflights answered by the gateway (before auth, without the upstream),
//! actual responses decorated for listed origins only.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use bytes::Bytes;
use common::*;
use http_body_util::Full;

const APP: &str = "https://app.example.com";

/// An upstream that counts its calls and sets its own (to be replaced) CORS header.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (
                [
                    ("access-control-allow-origin", "*"),
                    ("x-total", "3"),
                    ("vary", "accept"),
                ],
                "ok",
            )
        }
    });
    (upstream(router).await, hits)
}

async fn cors_gateway() -> (Running, Arc<AtomicUsize>) {
    let (up, hits) = counting_upstream().await;
    let gw = gateway(&format!(
        r#"
        [[upstreams]]
        name = "api"
        urls = ["{up}"]

        [[api_keys]]
        name = "web"
        hash = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

        [[routes]]
        prefix = "/private"
        methods = ["GET", "PUT"]
        upstream = "api"
        auth = {{ api_key = true }}
        [routes.cors]
        allow_origins = ["{APP}"]
        allow_methods = ["GET", "PUT"]
        allow_headers = ["x-api-key", "content-type"]
        expose_headers = ["x-total"]
        allow_credentials = true
        max_age = "10m"

        [[routes]]
        prefix = "/public"
        upstream = "api"
        cors = {{ allow_origins = ["*"] }}
        "#
    ))
    .await;
    (gw, hits)
}

async fn options(gw: &Running, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::options(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(gw, b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn a_preflight_is_answered_204_before_auth_and_without_the_upstream() {
    let (gw, hits) = cors_gateway().await;
    let r = options(
        &gw,
        "/private/items",
        &[
            ("origin", APP),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-api-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], APP);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(r.headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(
        r.headers["access-control-allow-headers"],
        "x-api-key, content-type"
    );
    assert_eq!(r.headers["access-control-max-age"], "600");
    assert!(r.headers["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the upstream is not called");
}

#[tokio::test]
async fn a_preflight_is_answered_by_the_route_serving_the_method_it_asks_about() {
    let (gw, _) = cors_gateway().await;
    // `/private` allows only GET and PUT, yet answers the OPTIONS preflight for PUT.
    let ask = |m: &'static str| [("origin", APP), ("access-control-request-method", m)];
    let r = options(&gw, "/private/items", &ask("PUT")).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["access-control-allow-origin"], APP);
    // No route serves DELETE on `/private`: nothing answers for it.
    assert_eq!(
        options(&gw, "/private/items", &ask("DELETE")).await.status,
        404
    );
}

#[tokio::test]
async fn a_preflight_from_an_unlisted_origin_gets_no_cors_headers() {
    let (gw, hits) = cors_gateway().await;
    let r = options(
        &gw,
        "/private/items",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(
        r.headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        r.headers
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_plain_options_request_is_not_a_preflight_and_reaches_the_upstream() {
    let (gw, hits) = cors_gateway().await;
    let r = options(&gw, "/public/items", &[("origin", APP)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn an_allowed_origin_is_echoed_on_the_actual_response_with_vary_and_exposed_headers() {
    let (gw, _) = cors_gateway().await;
    let key = "password";
    let r = get(
        &gw,
        "/private/items",
        &[("origin", APP), ("x-api-key", key)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], APP);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(r.headers["access-control-expose-headers"], "x-total");
    let vary: Vec<_> = r
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        vary,
        ["accept", "Origin"],
        "the upstream's Vary is kept and Origin added"
    );
}

#[tokio::test]
async fn a_disallowed_origin_is_still_forwarded_but_gets_no_cors_headers() {
    let (gw, hits) = cors_gateway().await;
    let r = get(
        &gw,
        "/private/items",
        &[
            ("origin", "https://evil.example"),
            ("x-api-key", "password"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "simple requests are forwarded"
    );
    assert!(
        r.headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "the upstream's own CORS header is dropped too: {:?}",
        r.headers
    );
}

#[tokio::test]
async fn error_answers_carry_cors_headers_so_the_page_can_read_them() {
    let (gw, hits) = cors_gateway().await;
    let r = get(&gw, "/private/items", &[("origin", APP)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["access-control-allow-origin"], APP);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn any_origin_without_credentials_answers_a_literal_star() {
    let (gw, _) = cors_gateway().await;
    let r = get(
        &gw,
        "/public/items",
        &[("origin", "https://anyone.example")],
    )
    .await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(!r.headers.contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn a_star_origin_with_credentials_is_refused_at_config_time() {
    let opts = flotilla_gateway::GatewayOptions::from_toml(
        "[[upstreams]]\nname = \"u\"\nurls = [\"http://127.0.0.1:1\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\n\
         cors = { allow_origins = [\"*\"], allow_credentials = true }",
    )
    .unwrap();
    let d: Arc<dyn flotilla_discovery::Discovery> =
        Arc::new(flotilla_discovery::StaticDiscovery::new());
    let err = flotilla_gateway::Gateway::new(opts, d).unwrap_err();
    assert!(
        err.to_string().contains("routes[0].cors.allow_origins"),
        "{err}"
    );
}
