//! W3C trace context through the gateway: what the upstream receives.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

async fn upstream_saw(headers: &[(&str, &str)]) -> serde_json::Value {
    let up = echo_upstream().await;
    let toml = format!(
        "[[upstreams]]\nname = \"echo\"\nurls = [\"{up}\"]\n\n\
         [[routes]]\nname = \"all\"\nprefix = \"/\"\nupstream = \"echo\"\n"
    );
    let gw = gateway(&toml).await;
    get(&gw, "/x", headers).await.json()["headers"].clone()
}

#[tokio::test]
async fn tracestate_lines_are_combined_and_travel_with_the_trace() {
    let h = upstream_saw(&[
        ("traceparent", TP),
        ("tracestate", "foo=1"),
        ("tracestate", "bar=2"),
    ])
    .await;
    let tp = h["traceparent"].as_str().unwrap();
    assert!(tp.starts_with("00-12345678901234567890123456789012-"));
    assert_ne!(&tp[36..52], "1234567890123456", "the gateway's own span id");
    assert_eq!(h["tracestate"], "foo=1,bar=2");
}

#[tokio::test]
async fn a_duplicated_traceparent_starts_a_new_trace_and_drops_tracestate() {
    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    let h = upstream_saw(&[
        ("traceparent", TP),
        ("traceparent", other),
        ("tracestate", "foo=1"),
    ])
    .await;
    let tp = h["traceparent"].as_str().unwrap();
    assert!(!tp.contains("1234567890123456789012345678901"), "{tp}");
    assert!(h.get("tracestate").is_none());
}

#[tokio::test]
async fn an_invalid_tracestate_is_not_forwarded() {
    let h = upstream_saw(&[("traceparent", TP), ("tracestate", "foo=bar=baz")]).await;
    assert!(
        h["traceparent"]
            .as_str()
            .unwrap()
            .contains("12345678901234567890123456789012")
    );
    assert!(h.get("tracestate").is_none());
}
