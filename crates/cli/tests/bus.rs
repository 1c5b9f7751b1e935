//! The bus admin commands against a running platform on embedded SQLite: `events tail`,
//! `dlq purge`, `dlq replay --all`, `groups`, and the consumer-lag gauges on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{KilledOnDrop, Up, cli, eventually, flotilla, http, http_as, start_role, stop};

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

fn platform(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Up {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    start_role("up", &dir.path().join("data"), &routes, env)
}

fn url(up: &Up) -> String {
    format!("http://127.0.0.1:{}", up.api)
}

fn declare(up: &Up, group: &str, pattern: &str) {
    let body = json!({ "pattern": pattern }).to_string();
    let (status, text) = http(up.api, "PUT", &format!("/api/v1/bus/groups/{group}"), &body);
    assert_eq!(status, 204, "{text}");
}

fn publish(up: &Up, topic: &str, id: &str, ty: &str) {
    let event =
        json!({"specversion": "1.0", "id": id, "source": "/test", "type": ty, "data": {"n": id}});
    let (status, text) = http_as(
        up.api,
        "POST",
        &format!("/api/v1/bus/topics/{topic}/events"),
        "application/cloudevents+json",
        &event.to_string(),
    );
    assert_eq!(status, 200, "{text}");
}

fn groups(up: &Up) -> Vec<Value> {
    let (_, body) = http(up.api, "GET", "/api/v1/bus/groups", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["groups"].as_array().unwrap().clone()
}

fn tail_groups(up: &Up) -> Vec<String> {
    groups(up)
        .iter()
        .filter_map(|g| g["spec"]["name"].as_str())
        .filter(|n| n.starts_with("tail-"))
        .map(str::to_owned)
        .collect()
}

/// `flotilla events tail <args>` against `up`, once it has declared its group.
fn tail(up: &Up, args: &[&str], stdout: Stdio) -> KilledOnDrop {
    let tail = KilledOnDrop(
        flotilla()
            .args(["events", "tail"])
            .args(args)
            .args(["--url", &url(up)])
            .stdout(stdout)
            .spawn()
            .unwrap(),
    );
    eventually(
        "the tail declares its group",
        Duration::from_secs(10),
        || tail_groups(up).len() == 1,
    );
    tail
}

/// `n` dead letters in group `g` (published to `t.a`, pulled and rejected).
fn dead_letters(up: &Up, n: usize) -> Vec<String> {
    declare(up, "g", "t.>");
    for i in 0..n {
        publish(up, "t.a", &format!("d{i}"), "t.a");
    }
    let pull = json!({"max": n, "wait_ms": 0}).to_string();
    let (_, body) = http(up.api, "POST", "/api/v1/bus/groups/g/pull", &pull);
    let v: Value = serde_json::from_str(&body).unwrap();
    for d in v["deliveries"].as_array().unwrap() {
        let r = json!({"receipt": d["receipt"], "reason": "poison"}).to_string();
        assert_eq!(
            http(up.api, "POST", "/api/v1/bus/groups/g/reject", &r).0,
            204
        );
    }
    dlq_ids(up)
}

fn dlq_ids(up: &Up) -> Vec<String> {
    let (_, body) = http(up.api, "GET", "/api/v1/bus/dlq?group=g", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn events_tail_follows_new_events_without_stealing_them_and_cleans_up_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[]);
    declare(&up, "billing", "orders.*");
    publish(&up, "orders.created", "before", "orders.created");
    let tail_args = ["orders.*", "--type", "orders.created", "--json"];
    let mut tail = tail(&up, &tail_args, Stdio::piped());
    publish(&up, "orders.created", "o-1", "orders.created");
    publish(&up, "orders.paid", "p-1", "orders.paid");
    publish(&up, "orders.created", "o-2", "orders.created");
    let mut lines = BufReader::new(tail.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        seen.push(line["event"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["o-1", "o-2"],
        "new events of the type only, in order"
    );
    let billing = groups(&up)
        .into_iter()
        .find(|g| g["spec"]["name"] == "billing")
        .unwrap();
    assert_eq!(billing["pending"], 4, "the real group keeps every event");
    support::send_signal(tail.0.id(), "-TERM");
    assert_eq!(tail.0.wait().unwrap().code(), Some(0));
    assert_eq!(
        tail_groups(&up),
        Vec::<String>::new(),
        "the tail's group is deleted"
    );
    stop(up);
}

#[test]
fn a_killed_tail_leaves_a_group_that_groups_rm_removes() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[]);
    let mut tail = tail(&up, &[">"], Stdio::null());
    tail.0.kill().unwrap();
    tail.0.wait().unwrap();
    let left = tail_groups(&up);
    assert_eq!(left.len(), 1);
    assert!(cli(&up, &["groups", "ls"]).contains(&left[0]));
    cli(&up, &["groups", "rm", &left[0]]);
    assert!(tail_groups(&up).is_empty());
    stop(up);
}

#[test]
fn tail_refuses_a_bad_pattern_naming_it() {
    let out = flotilla()
        .args(["events", "tail", "orders..x", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("orders..x"));
}

#[test]
fn dlq_purge_without_a_terminal_needs_yes_and_with_it_deletes_what_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[]);
    let ids = dead_letters(&up, 3);
    let out = flotilla()
        .args(["dlq", "purge", "--group", "g", "--url", &url(&up)])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_eq!(dlq_ids(&up).len(), 3, "nothing deleted without --yes");
    let out = cli(&up, &["dlq", "purge", "--group", "g", &ids[0], "--yes"]);
    assert!(out.contains("purged 1"), "{out}");
    assert_eq!(dlq_ids(&up), ids[1..]);
    let out = cli(&up, &["dlq", "purge", "--group", "g", "--yes", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["purged"], 2);
    assert!(dlq_ids(&up).is_empty());
    stop(up);
}

#[test]
fn dlq_replay_all_replays_every_entry_of_the_group_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[]);
    dead_letters(&up, 5);
    let out = flotilla()
        .args(["dlq", "replay", "--all", "--group", "g", "--url", &url(&up)])
        .output()
        .unwrap();
    support::assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("replayed 5") && stdout.contains("failed 0"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "no progress bar off a terminal"
    );
    assert!(dlq_ids(&up).is_empty());
    let g = groups(&up)
        .into_iter()
        .find(|g| g["spec"]["name"] == "g")
        .unwrap();
    assert_eq!(g["pending"], 5, "every entry is back in its group");
    let out = cli(&up, &["dlq", "replay", "--all", "--group", "g", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report,
        json!({"replayed": 0, "failed": [], "not_attempted": 0})
    );
    stop(up);
}

#[test]
fn dlq_replay_needs_an_id_or_all_with_a_group() {
    for args in [
        &["dlq", "replay"][..],
        &["dlq", "replay", "--all"],
        &["dlq", "replay", "x", "--all", "--group", "g"],
    ] {
        let out = flotilla().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn consumer_lag_and_dead_letters_show_per_group_on_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[("FLOTILLA_BUS__API__LAG_REFRESH_MS", "50")]);
    dead_letters(&up, 2);
    publish(&up, "t.b", "x1", "t.b");
    publish(&up, "t.b", "x2", "t.b");
    publish(&up, "t.b", "x3", "t.b");
    let mut text = String::new();
    eventually("the gauges show the group", Duration::from_secs(10), || {
        text = http(up.api, "GET", "/metrics", "").1;
        text.contains("flotilla_bus_consumer_lag{group=\"g\"} 3")
    });
    assert!(
        text.contains("flotilla_bus_dead_letters{group=\"g\"} 2"),
        "{text}"
    );
    stop(up);
}

#[test]
fn with_a_token_the_sse_pull_needs_it_and_tail_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir, &[("FLOTILLA_REGISTRY__TOKEN", "s3cret")]);
    let (status, _) = http(up.api, "GET", "/api/v1/bus/groups/any/events", "");
    assert_eq!(status, 401, "leasing over SSE is a write");
    let mut tail = tail(&up, &[">", "--token", "s3cret"], Stdio::null());
    support::send_signal(tail.0.id(), "-TERM");
    assert_eq!(tail.0.wait().unwrap().code(), Some(0));
    assert!(tail_groups(&up).is_empty());
    stop(up);
}
