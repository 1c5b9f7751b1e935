//! The control plane's `/metrics` under Prometheus's own linter: every family the platform
//! exports (HTTP, process, registry, bus, event store, gateway) passes `promtool check metrics`,
//! and the registry's check metrics are there before any check has run.
#![allow(clippy::unwrap_used)]

mod support;

use support::{http, http_as, start_role, stop};

use flotilla_testkit::prometheus;

const SUITE: &str = "control plane /metrics (promtool)";

#[test]
fn every_family_on_the_control_planes_metrics_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    let lag_refresh = [("FLOTILLA_BUS__API__LAG_REFRESH_MS", "20")];
    let up = start_role("up", &dir.path().join("data"), &routes, &lag_refresh);
    traffic(&up);
    let text = scrape_once_lag_shows(&up);
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

/// `/metrics` once the bus's consumer-lag gauges (refreshed in the background) include the
/// group `traffic` declared, so the bus's families are linted too.
fn scrape_once_lag_shows(up: &support::Up) -> String {
    for _ in 0..250 {
        let (status, text) = http(up.api, "GET", "/metrics", "");
        assert_eq!(status, 200, "{text}");
        if text.contains("flotilla_bus_consumer_lag{group=\"audit\"} 1") {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the consumer-lag gauge of group audit never showed on /metrics");
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
