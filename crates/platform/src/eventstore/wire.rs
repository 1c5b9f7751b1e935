//! What travels over `/api/v1/streams`: paths, bodies, answers, and the mapping of failures
//! back onto the contract's [`Error`], so a caller matches the same variants as against a
//! linked engine.

use flotilla_core::StreamId;
use flotilla_eventstore::{Error, ExpectedVersion, Filter, RecordedEvent, Snapshot, StreamInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::http::segment;
use crate::{CallError, Problem};

/// Most items asked for in one page; the server may cap lower and says so in `limit`.
pub(super) const PAGE: usize = 1000;

pub(super) fn stream_path(stream: &StreamId, tail: &str) -> String {
    format!("/api/v1/streams/{}{tail}", segment(stream.as_str()))
}

pub(super) fn checkpoint_path(subscriber: &str) -> String {
    format!("/api/v1/streams/$subscriptions/{}", segment(subscriber))
}

/// The API's spelling of an expected version (the header and the `expected_version` field).
pub(super) fn expected_text(expected: ExpectedVersion) -> String {
    match expected {
        ExpectedVersion::Any => "any".into(),
        ExpectedVersion::NoStream => "no-stream".into(),
        ExpectedVersion::StreamExists => "exists".into(),
        ExpectedVersion::Exact(n) => n.to_string(),
    }
}

/// The query members of a `$all` filter.
pub(super) fn filter_query(filter: &Filter) -> String {
    match filter {
        Filter::All => String::new(),
        Filter::Category(c) => format!("&category={}", segment(c)),
        Filter::EventType(t) => format!("&type={}", segment(t)),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct AppendBody<'a> {
    pub(super) expected_version: String,
    pub(super) events: &'a [flotilla_eventstore::NewEvent],
}

/// A page of a stream (`next`: where the next page starts, when this one was full).
#[derive(Debug, Deserialize)]
pub(super) struct StreamPage {
    pub(super) events: Vec<RecordedEvent>,
    pub(super) next: Option<u64>,
}

/// A page of `$all` (`limit`: the page size the server applied).
#[derive(Debug, Deserialize)]
pub(super) struct AllPage {
    pub(super) events: Vec<RecordedEvent>,
    pub(super) limit: usize,
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamsPage {
    pub(super) streams: Vec<StreamInfo>,
    pub(super) next_after: Option<StreamId>,
}

#[derive(Debug, Deserialize)]
pub(super) struct VersionAnswer {
    pub(super) version: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TruncateAnswer {
    pub(super) removed: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct SnapshotAnswer {
    pub(super) snapshot: Option<Snapshot>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckpointAnswer {
    pub(super) position: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Subscriber {
    pub(super) name: String,
    pub(super) position: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubscribersAnswer {
    pub(super) subscriptions: Vec<Subscriber>,
}

/// What the failed call was about, to fill in what a problem body leaves out.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Context<'a> {
    pub(super) stream: Option<&'a StreamId>,
    pub(super) expected: Option<ExpectedVersion>,
}

impl<'a> Context<'a> {
    pub(super) fn stream(stream: &'a StreamId) -> Self {
        Self {
            stream: Some(stream),
            expected: None,
        }
    }

    pub(super) fn expecting(stream: &'a StreamId, expected: ExpectedVersion) -> Self {
        Self {
            stream: Some(stream),
            expected: Some(expected),
        }
    }
}

/// Maps a failed call onto the contract. Transport failures (no connection, no answer within
/// the deadline, 5xx) are `Storage { retryable: true }`: the outcome is unknown, and the
/// contract tells the caller to retry with the same event ids.
pub(super) fn error(e: CallError, cx: Context<'_>) -> Error {
    match e {
        CallError::Status {
            status, problem, ..
        } => from_problem(status, &problem, cx),
        e if e.is_transient() => Error::storage(e),
        // A refused token, a bad URL or an answer not understood will not pass on a retry.
        e => Error::Storage {
            message: e.to_string(),
            retryable: false,
        },
    }
}

fn from_problem(status: u16, problem: &Problem, cx: Context<'_>) -> Error {
    let ext = &problem.extensions;
    let detail = || problem.detail.clone().unwrap_or_default();
    let stream = || {
        ext.get("stream")
            .and_then(|v| serde_json::from_value::<StreamId>(v.clone()).ok())
            .or_else(|| cx.stream.cloned())
    };
    match ext.get("code").and_then(Value::as_str) {
        Some("wrong_expected_version") => {
            let expected = ext
                .get("expected_version")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .or(cx.expected);
            if let (Some(stream), Some(expected)) = (stream(), expected) {
                let actual = ext.get("actual_version").and_then(Value::as_u64);
                return Error::WrongExpectedVersion {
                    stream,
                    expected,
                    actual,
                };
            }
        }
        Some("idempotency_violation") => {
            let id = ext.get("event_id").and_then(Value::as_str);
            if let Some(id) = id.and_then(|id| Uuid::parse_str(id).ok()) {
                let reason = ext.get("reason").and_then(Value::as_str);
                let reason = reason.map_or_else(detail, str::to_owned);
                return Error::IdempotencyViolation { id, reason };
            }
        }
        Some("stream_deleted") => {
            if let Some(stream) = stream() {
                return Error::StreamDeleted { stream };
            }
        }
        Some("invalid_input") => return Error::InvalidInput(detail()),
        Some("storage") => {
            let retryable = ext.get("retryable").and_then(Value::as_bool);
            return Error::Storage {
                message: format!("the control plane's event store failed: {}", detail()),
                retryable: retryable.unwrap_or(true),
            };
        }
        _ => {}
    }
    by_status(status, detail())
}

/// A problem without a code the store API sends: a limit, or no store API at all.
fn by_status(status: u16, detail: String) -> Error {
    match status {
        400 | 413 | 422 => Error::InvalidInput(detail),
        404 => Error::Storage {
            message: format!("the control plane serves no event store API ({detail})"),
            retryable: false,
        },
        429 | 500..=599 => Error::storage(format!("control plane answered {status}: {detail}")),
        _ => Error::Storage {
            message: format!("control plane answered {status}: {detail}"),
            retryable: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(status: u16, body: Value) -> CallError {
        CallError::Status {
            status,
            problem: serde_json::from_value(body).unwrap_or_default(),
            retry_after: None,
        }
    }

    #[test]
    fn a_conflict_keeps_the_actual_version_and_the_callers_expectation() {
        let s = StreamId::new("order-1").unwrap();
        let body = json!({"status": 409, "code": "wrong_expected_version", "actual_version": 4});
        let e = error(
            status(409, body),
            Context::expecting(&s, ExpectedVersion::Exact(3)),
        );
        assert_eq!(
            e,
            Error::WrongExpectedVersion {
                stream: s,
                expected: ExpectedVersion::Exact(3),
                actual: Some(4)
            }
        );
    }

    #[test]
    fn transport_failures_are_retryable_storage_errors_and_a_refused_token_is_not() {
        let down = CallError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "refused".into(),
        };
        let retryable = |e: Error| matches!(e, Error::Storage { retryable, .. } if retryable);
        assert!(retryable(error(down, Context::default())));
        assert!(retryable(error(status(503, json!({})), Context::default())));
        let refused = CallError::Unauthorized {
            url: "http://127.0.0.1:1".into(),
            status: 401,
        };
        let e = error(refused, Context::default());
        assert!(
            !retryable(e.clone()) && e.to_string().contains("platform.token"),
            "{e}"
        );
    }

    #[test]
    fn limits_without_a_code_are_invalid_input_naming_the_limit() {
        let body = json!({"detail": "1001 events in one append; at most 1000 are accepted"});
        let e = error(status(413, body), Context::default());
        assert!(
            matches!(&e, Error::InvalidInput(d) if d.contains("1000")),
            "{e:?}"
        );
    }
}
