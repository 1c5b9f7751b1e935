//! JSON response transforms against a real upstream.
#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get as route_get;
use common::*;
use serde_json::json;

async fn user() -> impl IntoResponse {
    (
        [("etag", "\"v1\"")],
        axum::Json(json!({
            "id": 7, "name": "Ada", "password_hash": "x",
            "address": {"city": "London", "street": "St James's Square"}
        })),
    )
}

async fn users() -> axum::Json<serde_json::Value> {
    axum::Json(json!([{"id": 1, "name": "Ada", "secret": 1}, {"id": 2, "name": "Grace"}]))
}

async fn encoding_seen(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let seen = headers.get("accept-encoding").is_some();
    axum::Json(json!({"accept_encoding_seen": seen, "drop": true}))
}

/// Honours `Range` as a real server would: a slice of the document, with the hidden field.
async fn ranged(headers: HeaderMap) -> axum::response::Response {
    let doc = r#"{"drop": "hidden", "keep": 1}"#;
    if headers.contains_key("range") || headers.contains_key("if-range") {
        let slice = &doc[..20];
        let range = format!("bytes 0-19/{}", doc.len());
        return (
            axum::http::StatusCode::PARTIAL_CONTENT,
            [
                ("content-type", "application/json".to_owned()),
                ("content-range", range),
            ],
            slice.to_owned(),
        )
            .into_response();
    }
    ([("content-type", "application/json")], doc).into_response()
}

async fn gateway_over(up: &str) -> Running {
    gateway(&format!(
        r#"
        [[upstreams]]
        name = "users"
        urls = ["{up}"]

        [[routes]]
        path = "/users/{{id}}"
        upstream = "users"
        [routes.transform]
        select = ["id", "name", "address.city"]
        rename = {{ name = "display_name" }}

        [[routes]]
        path = "/users"
        upstream = "users"
        [routes.transform]
        remove = ["secret"]

        [[routes]]
        prefix = "/other"
        upstream = "users"
        [routes.transform]
        remove = ["drop"]
        max_body_bytes = 64
        "#
    ))
    .await
}

fn upstream_router() -> Router {
    Router::new()
        .route("/users/{id}", route_get(user))
        .route("/users", route_get(users))
        .route("/other/encoding", route_get(encoding_seen))
        .route(
            "/other/big",
            route_get(|| async { axum::Json(json!({"pad": "x".repeat(500)})) }),
        )
        .route("/other/ranged", route_get(ranged))
        .route(
            "/other/partial",
            route_get(|| async {
                (
                    axum::http::StatusCode::PARTIAL_CONTENT,
                    [
                        ("content-type", "application/json"),
                        ("content-range", "bytes 0-9/30"),
                    ],
                    "{\"drop\": 1",
                )
            }),
        )
        .route(
            "/other/text",
            route_get(|| async { "plain text, untouched" }),
        )
        .route(
            "/other/lying",
            route_get(|| async { ([("content-type", "application/json")], "{not json") }),
        )
        .route(
            "/other/missing",
            route_get(|| async {
                (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({"drop": 1, "detail": "no"})),
                )
            }),
        )
}

#[tokio::test]
async fn selected_and_renamed_fields_are_all_the_client_sees() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let r = get(&gw, "/users/7", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"id": 7, "display_name": "Ada", "address": {"city": "London"}})
    );
    assert_eq!(
        r.headers["content-length"],
        r.body.len().to_string().as_str()
    );
    assert!(
        r.headers.get("etag").is_none(),
        "the upstream's validator no longer applies"
    );
}

#[tokio::test]
async fn arrays_are_transformed_element_by_element() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let r = get(&gw, "/users", &[]).await;
    assert_eq!(
        r.json(),
        json!([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}])
    );
}

#[tokio::test]
async fn the_upstream_is_asked_for_an_unencoded_answer() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let r = get(&gw, "/other/encoding", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(r.json(), json!({"accept_encoding_seen": false}));
}

#[tokio::test]
async fn non_json_and_error_answers_pass_through_untouched() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let text = get(&gw, "/other/text", &[]).await;
    assert_eq!(text.status, 200);
    assert_eq!(&text.body[..], b"plain text, untouched");
    let missing = get(&gw, "/other/missing", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"drop": 1, "detail": "no"}));
}

#[tokio::test]
async fn oversized_or_malformed_json_is_refused_not_passed_through() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    for path in ["/other/big", "/other/lying"] {
        let r = get(&gw, path, &[]).await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            !body.contains("pad") && !body.contains("not json"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_bad_transform_is_a_config_error_naming_the_key() {
    let text = r#"
        [[upstreams]]
        name = "u"
        urls = ["http://127.0.0.1:9"]

        [[routes]]
        path = "/x"
        upstream = "u"
        [routes.transform]
        select = ["a..b"]
    "#;
    let opts = flotilla_gateway::config::GatewayOptions::from_toml(text).unwrap();
    let discovery = std::sync::Arc::new(flotilla_discovery::StaticDiscovery::new());
    let err = flotilla_gateway::Gateway::new(opts, discovery).unwrap_err();
    assert!(
        err.to_string().contains("routes[0].transform.select[0]"),
        "{err}"
    );
}

#[tokio::test]
async fn a_range_request_cannot_bypass_the_transform() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let r = get(
        &gw,
        "/other/ranged",
        &[("range", "bytes=0-19"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_eq!(r.status, 200, "the whole document was asked for");
    assert_eq!(r.json(), json!({"keep": 1}));
}

#[tokio::test]
async fn a_partial_answer_on_a_transformed_route_is_a_502() {
    let gw = gateway_over(&upstream(upstream_router()).await).await;
    let r = get(&gw, "/other/partial", &[]).await;
    assert_eq!(r.status, 502);
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("drop"), "{body}");
}
