//! Routing, rewrites and proxy header semantics against a real upstream.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn config(up: &str) -> String {
    format!(
        r#"
        [[upstreams]]
        name = "echo"
        urls = ["{up}"]

        [[routes]]
        name = "prefix"
        prefix = "/users"
        upstream = "echo"

        [[routes]]
        name = "template"
        path = "/users/{{id}}"
        upstream = "echo"
        rewrite = {{ template = "/v2/people/{{id}}" }}

        [[routes]]
        name = "exact"
        path = "/users/me"
        upstream = "echo"

        [[routes]]
        name = "catchall"
        path = "/static/{{*rest}}"
        upstream = "echo"
        rewrite = {{ template = "/assets/{{*rest}}" }}

        [[routes]]
        name = "strip"
        prefix = "/api"
        upstream = "echo"
        rewrite = {{ strip_prefix = "/api" }}
        request_headers = {{ set = {{ x-route = "strip" }}, remove = ["x-drop"] }}
        response_headers = {{ add = {{ x-served-by = "flotilla" }} }}

        [[routes]]
        name = "canary"
        prefix = "/api"
        headers = {{ x-canary = "1" }}
        upstream = "echo"
        rewrite = {{ replace_prefix = "/canary" }}

        [[routes]]
        name = "admin-host"
        prefix = "/"
        hosts = ["admin.example.com"]
        methods = ["GET"]
        upstream = "echo"
        rewrite = {{ replace_prefix = "/admin-site" }}
        "#
    )
}

#[tokio::test]
async fn exact_beats_template_beats_prefix_and_params_rewrite() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    let me = get(&gw, "/users/me", &[]).await;
    assert_eq!(me.json()["uri"], "/users/me");
    let one = get(&gw, "/users/42?x=1", &[]).await;
    assert_eq!(one.json()["uri"], "/v2/people/42?x=1");
    let deep = get(&gw, "/users/42/orders", &[]).await;
    assert_eq!(deep.json()["uri"], "/users/42/orders");
    let assets = get(&gw, "/static/css/site.css", &[]).await;
    assert_eq!(assets.json()["uri"], "/assets/css/site.css");
}

#[tokio::test]
async fn header_and_host_matchers_select_routes() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    let plain = get(&gw, "/api/items", &[]).await;
    assert_eq!(plain.json()["uri"], "/items");
    let canary = get(&gw, "/api/items", &[("x-canary", "1")]).await;
    assert_eq!(canary.json()["uri"], "/canary/items");
    let admin = get(&gw, "/x", &[("host", "Admin.Example.com:8080")]).await;
    assert_eq!(admin.json()["uri"], "/admin-site/x");
    let none = get(&gw, "/x", &[]).await;
    assert_eq!(none.status, 404);
    assert_eq!(none.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn dot_segments_and_escapes_cannot_bypass_a_route() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    // `/static/../users/me` must be matched (and forwarded) as `/users/me`.
    let r = get(&gw, "/static/../users/me", &[]).await;
    assert_eq!(r.json()["uri"], "/users/me");
    let r = get(&gw, "/%75sers/me", &[]).await;
    assert_eq!(r.json()["uri"], "/users/me");
    let r = get(&gw, "/api/a%2F..%2F..%2Fadmin", &[]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn by_default_a_client_cannot_forge_forwarding_headers() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    let r = get(
        &gw,
        "/api/h",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.7;proto=https"),
        ],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_ne!(h["x-forwarded-host"], "evil.example");
    let fwd = h["forwarded"].as_str().unwrap();
    assert!(fwd.starts_with("for=127.0.0.1;proto=http"), "{fwd}");
    assert!(!fwd.contains("203.0.113.7"), "{fwd}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let trusting = "[server]\ntrust_forwarded_headers = true\n";
    let gw = gateway(&format!("{trusting}{}", config(&echo_upstream().await))).await;
    let r = get(
        &gw,
        "/api/h",
        &[
            ("connection", "x-secret"),
            ("x-secret", "s"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("x-drop", "1"),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    )
    .await;
    let h = &r.json()["headers"];
    for gone in ["x-secret", "proxy-authorization", "te", "x-drop"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(
        h["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http")
    );
    assert_eq!(h["via"], "1.1 flotilla");
    assert_eq!(h["x-route"], "strip");
    assert_eq!(r.headers["x-served-by"], "flotilla");
}

#[tokio::test]
async fn request_id_and_trace_context_are_continued_or_created() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get(
        &gw,
        "/api/t",
        &[("x-request-id", "abc-123"), ("traceparent", tp)],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let sent = h["traceparent"].as_str().unwrap();
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert_ne!(sent, tp, "the gateway is a new span");
    let fresh = get(&gw, "/api/t", &[("x-request-id", "bad id\twith tab")]).await;
    let id = fresh.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "bad id\twith tab");
    assert_eq!(fresh.headers["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test]
async fn invalid_config_names_the_key() {
    let bad = "[[upstreams]]\nname = \"a\"\nurls = [\"http://127.0.0.1:1\"]\n\
               [[routes]]\nprefix = \"/\"\nupstream = \"a\"\n\
               [[routes]]\npath = \"/x\"\nupstream = \"missing\"";
    let opts = flotilla_gateway::GatewayOptions::from_toml(bad).unwrap();
    let d = std::sync::Arc::new(flotilla_discovery::StaticDiscovery::new());
    let e = flotilla_gateway::Gateway::new(opts, d).unwrap_err();
    assert!(e.to_string().contains("routes[1].upstream"), "{e}");
}

#[tokio::test]
async fn discovery_upstreams_follow_instance_changes_and_filters() {
    let a = echo_upstream().await;
    let gw = gateway(
        "[[upstreams]]\nname = \"users\"\nservice = \"users\"\nversion = \"^1\"\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"users\"",
    )
    .await;
    assert_eq!(get(&gw, "/x", &[]).await.status, 503, "no instance yet");
    let svc = flotilla_core::ServiceName::new("users").unwrap();
    let port: u16 = a.rsplit(':').next().unwrap().parse().unwrap();
    let mut v1 = flotilla_core::ServiceInstance::new(svc.clone(), "127.0.0.1", port);
    v1.version = "1.4.0".into();
    let mut v2 = flotilla_core::ServiceInstance::new(svc.clone(), "127.0.0.1", 1);
    v2.version = "2.0.0".into();
    gw.discovery.set_passing(&svc, vec![v1, v2]);
    for _ in 0..4 {
        assert_eq!(
            get(&gw, "/x", &[]).await.status,
            200,
            "only the ^1 instance is used"
        );
    }
}

#[tokio::test]
async fn the_upstream_gets_the_authority_the_request_was_routed_by() {
    let gw = gateway(&config(&echo_upstream().await)).await;
    let out = raw(
        gw.addr,
        b"GET http://api.example:8080/api/h HTTP/1.1\r\nHost: other.example\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(first_status(&out), 200, "{out}");
    assert!(out.contains(r#""host":"api.example:8080""#), "{out}");
    assert!(!out.contains("other.example"), "{out}");
}
