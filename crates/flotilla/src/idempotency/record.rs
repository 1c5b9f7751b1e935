//! What the key's stream holds, and what a request decides from it.
//!
//! `Started` claims the key until its lease ends; `Completed` stores the answer for replays;
//! `Released` gives the key back after a 5xx, 408 or 429, so a retry runs the handler again.
//! Every record is appended at the version read before it, so two claimants never both win.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, response::Parts};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flotilla_eventstore::{NewEvent, RecordedEvent, Version};
use serde::{Deserialize, Serialize};

/// The answer headers kept with a stored answer: what a caller may act on.
const KEPT_HEADERS: [&str; 3] = ["content-type", "location", "etag"];

pub(super) const STARTED: &str = "Started";
pub(super) const COMPLETED: &str = "Completed";
pub(super) const RELEASED: &str = "Released";

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Started {
    pub(super) fingerprint: String,
    /// Unix milliseconds after which another request may take the key over.
    pub(super) lease_until_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Completed {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    /// The body when it is UTF-8 text, else `body_base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) body_base64: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Released {
    pub(super) status: u16,
}

/// The key's state after its stream's records.
#[derive(Debug, Default)]
pub(super) struct Entry {
    pub(super) version: Option<Version>,
    /// The first request's fingerprint; every later request under the key must match it.
    pub(super) fingerprint: Option<String>,
    pub(super) state: KeyState,
}

#[derive(Debug, Default)]
pub(super) enum KeyState {
    #[default]
    Free,
    Claimed {
        lease_until_ms: u64,
    },
    Done(Completed),
}

impl Entry {
    pub(super) fn fold(events: &[RecordedEvent]) -> Result<Self, serde_json::Error> {
        let mut entry = Entry::default();
        for e in events {
            entry.version = Some(e.version);
            match e.event_type.as_str() {
                STARTED => {
                    let s: Started = serde_json::from_value(e.data.clone())?;
                    entry.fingerprint.get_or_insert(s.fingerprint);
                    entry.state = KeyState::Claimed {
                        lease_until_ms: s.lease_until_ms,
                    };
                }
                COMPLETED => entry.state = KeyState::Done(serde_json::from_value(e.data.clone())?),
                RELEASED => entry.state = KeyState::Free,
                _ => {} // a record of a later version of this module: it decides nothing here
            }
        }
        Ok(entry)
    }
}

pub(super) fn event<T: Serialize>(event_type: &str, data: &T) -> NewEvent {
    let data = serde_json::to_value(data).unwrap_or(serde_json::Value::Null);
    NewEvent::new(event_type, data)
}

pub(super) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn lease_until(lease: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

impl Completed {
    pub(super) fn capture(parts: &Parts, body: &Bytes) -> Self {
        let headers = KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        let (text, binary) = match std::str::from_utf8(body) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(BASE64.encode(body))),
        };
        Self {
            status: parts.status.as_u16(),
            headers,
            body: text,
            body_base64: binary,
        }
    }

    /// The stored answer again, marked as a replay.
    pub(super) fn replay(&self) -> Response {
        let body = match (&self.body, &self.body_base64) {
            (Some(text), _) => Bytes::from(text.clone()),
            (None, Some(b64)) => BASE64.decode(b64).map(Bytes::from).unwrap_or_default(),
            (None, None) => Bytes::new(),
        };
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (name, value) in &self.headers {
            let parsed = (HeaderName::try_from(name), HeaderValue::try_from(value));
            if let (Ok(name), Ok(value)) = parsed {
                res.headers_mut().insert(name, value);
            }
        }
        let replayed = HeaderValue::from_static("true");
        res.headers_mut()
            .insert(super::IDEMPOTENT_REPLAYED, replayed);
        res
    }
}
