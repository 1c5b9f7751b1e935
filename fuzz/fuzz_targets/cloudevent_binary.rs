//! CloudEvents in binary HTTP mode: `ce-*` headers and a content type with any body, as the
//! bus API reads a publish. An event it accepts, written back to binary mode (attributes
//! percent-encoded into `ce-*` headers, the data as the body), must be read as the same event.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flotilla_broker::Broker;
use flotilla_bus::{Backend, GroupName, GroupSpec, MemoryBackend};
use flotilla_core::{CloudEvent, TopicPattern};
use http::Request;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// What the HTTP binding (§3.1.3.2) has a sender percent-encode, plus what a header cannot hold.
const ENCODE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(0x7f);

/// A broker over its own backend with one group on every topic, to read back what it stored.
fn broker() -> (Broker, Arc<MemoryBackend>, GroupName) {
    let backend = Arc::new(MemoryBackend::new());
    let group = GroupName::new("fuzz").expect("a valid group");
    let spec = GroupSpec {
        name: group.clone(),
        pattern: TopicPattern::new(">").expect("a valid pattern"),
    };
    RUNTIME
        .block_on(backend.declare_group(&spec))
        .expect("declared");
    let broker = Broker::new(Default::default(), backend.clone()).expect("default options");
    (broker, backend, group)
}

/// Publishes in binary mode; answers the event the bus stored, if it accepted the request.
fn publish(headers: &[(String, String)], body: Vec<u8>) -> Option<CloudEvent> {
    let (broker, backend, group) = broker();
    let mut request = Request::builder()
        .method("POST")
        .uri("/api/v1/bus/topics/fuzz.binary/events");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Body::from(body)).ok()?;
    RUNTIME.block_on(async {
        let status = broker.router().oneshot(request).await.ok()?.status();
        assert!(!status.is_server_error(), "{status}");
        if !status.is_success() {
            return None;
        }
        let wait = std::time::Duration::ZERO;
        let mut got = backend
            .receive(&group, 1, std::time::Duration::from_secs(60), wait)
            .await
            .ok()?;
        Some(got.pop().expect("an accepted publish is stored").event)
    })
}

/// The event written back in binary mode.
fn binary(event: &CloudEvent) -> (Vec<(String, String)>, Vec<u8>) {
    let Value::Object(members) = event.to_json_value() else {
        panic!("an event encodes as an object");
    };
    let mut headers = vec![];
    let mut body = vec![];
    for (name, value) in members {
        match (name.as_str(), value) {
            ("datacontenttype", Value::String(t)) => headers.push(("content-type".into(), t)),
            ("data", Value::String(text)) if !is_json(event) => body = text.into_bytes(),
            ("data", data) => body = serde_json::to_vec(&data).expect("JSON"),
            ("data_base64", Value::String(b64)) => {
                body = B64.decode(b64).expect("data_base64 the bus wrote decodes")
            }
            (_, Value::String(v)) => headers.push((
                format!("ce-{name}"),
                utf8_percent_encode(&v, ENCODE).to_string(),
            )),
            (_, other) => headers.push((format!("ce-{name}"), other.to_string())),
        }
    }
    (headers, body)
}

fn is_json(event: &CloudEvent) -> bool {
    let t = event.datacontenttype.as_deref().unwrap_or_default();
    let t = t
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    t == "application/json" || t.ends_with("+json")
}

// `name: value` lines up to an empty line (names get the `ce-` prefix unless they are
// `content-type`), then the body.
fuzz_target!(|data: &[u8]| {
    let mut headers = vec![("ce-specversion".to_owned(), "1.0".to_owned())];
    let mut rest = data;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        let name = name.trim().to_ascii_lowercase();
        let name = if name == "content-type" {
            name
        } else {
            format!("ce-{name}")
        };
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value.trim().to_owned()));
    }
    let Some(event) = publish(&headers, rest.to_vec()) else {
        return;
    };
    let (headers, body) = binary(&event);
    let again = publish(&headers, body).expect("an event written back to binary mode is accepted");
    assert_eq!(event, again);
});
