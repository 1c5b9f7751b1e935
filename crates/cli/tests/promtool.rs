//! The control plane's `/metrics` under Prometheus's own linter: every family the platform
//! exports (HTTP, process, registry, bus, event store, gateway) passes `promtool check metrics`,
//! and the registry's check metrics are there before any check has run.
#![allow(clippy::unwrap_used)]

mod support;

use support::{http, http_as, start, stop};

use flotilla_testkit::prometheus;

const SUITE: &str = "control plane /metrics (promtool)";

#[test]
fn every_family_on_the_control_planes_metrics_passes_promtool() {
    let Some(_) = flotilla_testkit::tool("promtool", SUITE) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let up = start(&dir.path().join("data"), &routes);
    traffic(&up);
    let (status, text) = http(up.api, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    let samples = prometheus::parse(&text).unwrap();
    let checks = |kind| {
        let labels = [("kind", kind), ("status", "passing")];
        samples
            .iter()
            .any(|s| s.name == "flotilla_registry_checks_total" && labels_match(s, &labels))
    };
    assert!(checks("http") && checks("tcp") && checks("ttl"), "{text}");
    for family in ["http_requests_total", "process_cpu_seconds_total"] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}: {text}"
        );
    }
    if let Some(verdict) = prometheus::promtool_check(&text, SUITE) {
        verdict.unwrap();
    }
    stop(up);
}

fn labels_match(sample: &prometheus::Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
}

/// Touches every component, so each exports its families (prometheus-client leaves out a
/// family with no series yet).
fn traffic(up: &support::Up) {
    let (status, text) = http(
        up.api,
        "PUT",
        "/api/v1/bus/groups/audit",
        r#"{"pattern":"t.>"}"#,
    );
    assert_eq!(status, 204, "{text}");
    let event = r#"{"specversion":"1.0","id":"1","source":"/t","type":"t.a"}"#;
    let path = "/api/v1/bus/topics/t.a/events";
    let (status, text) = http_as(up.api, "POST", path, "application/cloudevents+json", event);
    assert_eq!(status, 200, "{text}");
    let append = r#"{"events":[{"type":"Placed","data":{}}]}"#;
    let (status, text) = http(up.api, "POST", "/api/v1/streams/order-1", append);
    assert_eq!(status, 201, "{text}");
    let (status, _) = http(up.gateway, "GET", "/nowhere", "");
    assert_eq!(status, 404);
}
