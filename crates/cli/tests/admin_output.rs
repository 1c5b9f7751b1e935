//! What the admin commands print and how they fail, as a user reads it: finding the control
//! plane, tables, what a change did, unknown names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Up, cli, flotilla, http, http_as, start_role};

use serde_json::{Value, json};

fn platform(dir: &tempfile::TempDir) -> Up {
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    start_role("up", &dir.path().join("data"), &routes, &[])
}

/// Runs an admin command against `up`; (exit code, stdout, stderr).
fn run(up: &Up, args: &[&str]) -> (Option<i32>, String, String) {
    let out = flotilla()
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{}", up.api)])
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[test]
fn without_url_the_control_plane_is_found_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    let config = dir.path().join("flotilla.toml");
    // Beyond loopback, as a real deployment: a token is then required, and is used.
    let text = format!(
        "[server]\nlisten = \"0.0.0.0:{}\"\n[registry]\ntoken = \"s3cret\"\n",
        up.api
    );
    std::fs::write(&config, text).unwrap();
    let explicit = flotilla()
        .args(["topics", "ls", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(explicit.status.success(), "{explicit:?}");
    // `./flotilla.toml`, as `up` reads by default.
    let implicit = flotilla()
        .args(["topics", "ls"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(implicit.status.success(), "{implicit:?}");
}

#[test]
fn streams_read_shows_the_stream_first_the_age_and_the_event_data() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    let body = r#"{"events":[{"type":"OrderPlaced","data":{"sku":"a-1"}}]}"#;
    assert_eq!(http(up.api, "POST", "/api/v1/streams/order-1", body).0, 201);
    let out = cli(&up, &["streams", "read", "order-1"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("STREAM"), "{out}");
    assert!(
        header.contains("RECORDED") && header.trim_end().ends_with("DATA"),
        "{out}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("order-1"), "{out}");
    assert!(
        row.contains(" s ago") && row.ends_with(r#"{"sku":"a-1"}"#),
        "{out}"
    );
}

fn dead_letter(up: &Up) -> String {
    let put = json!({ "pattern": "t.>" }).to_string();
    assert_eq!(http(up.api, "PUT", "/api/v1/bus/groups/g", &put).0, 204);
    let event = json!({"specversion": "1.0", "id": "e1", "source": "/t", "type": "t.a"});
    let path = "/api/v1/bus/topics/t.a/events";
    let ct = "application/cloudevents+json";
    assert_eq!(http_as(up.api, "POST", path, ct, &event.to_string()).0, 200);
    let pull = json!({"max": 1, "wait_ms": 0}).to_string();
    let (_, body) = http(up.api, "POST", "/api/v1/bus/groups/g/pull", &pull);
    let pulled: Value = serde_json::from_str(&body).unwrap();
    let reject = json!({"receipt": pulled["deliveries"][0]["receipt"], "reason": "poison"});
    let path = "/api/v1/bus/groups/g/reject";
    assert_eq!(http(up.api, "POST", path, &reject.to_string()).0, 204);
    let (_, body) = http(up.api, "GET", "/api/v1/bus/dlq?group=g", "");
    let listed: Value = serde_json::from_str(&body).unwrap();
    listed["dead_letters"][0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn dlq_replay_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    let id = dead_letter(&up);
    let out = cli(&up, &["dlq", "replay", &id]);
    assert!(out.contains("replayed") && out.contains(&id), "{out}");
    assert!(!out.contains("null"), "{out}");
}

#[test]
fn removing_or_purging_an_unknown_group_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    dead_letter(&up);
    let (code, _, stderr) = run(&up, &["groups", "rm", "g", "nope"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"nope\""), "{stderr}");
    let (code, _, stderr) = run(&up, &["dlq", "purge", "--group", "nope", "--yes"]);
    assert_eq!(code, Some(1), "{stderr}");
    let groups = cli(&up, &["groups", "ls", "--json"]);
    let listed: Value = serde_json::from_str(&groups).unwrap();
    assert_eq!(
        listed["groups"][0]["name"], "g",
        "g was not deleted: {groups}"
    );
}

#[test]
fn json_output_is_one_document_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    let id = dead_letter(&up);
    for args in [
        vec!["groups", "ls"],
        vec!["dlq", "ls"],
        vec!["dlq", "replay", &id],
        vec!["groups", "rm", "g"],
    ] {
        let out = cli(&up, &[args.as_slice(), &["--json"]].concat());
        let parsed: Result<Value, _> = serde_json::from_str(&out);
        assert!(parsed.is_ok(), "{args:?}: {out}");
    }
}

#[test]
fn a_table_to_a_reader_that_went_away_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(&dir);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = flotilla()
        .args([
            "services",
            "ls",
            "--url",
            &format!("http://127.0.0.1:{}", up.api),
        ])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
