//! The request's key and fingerprint, and the stream that records what was done under it.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_core::StreamId;
use sha2::{Digest, Sha256};

use crate::Problem;

/// The longest stream id the event store accepts.
const MAX_STREAM_ID: usize = 200;

/// The header's value: `Ok(None)` when the request has none.
pub(super) fn key_of(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(super::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key.to_owned())),
        _ => Err("must be 1 or more printable ASCII characters".to_owned()),
    }
}

/// The 400 a request without the header gets on a route that requires it.
pub(super) fn missing_key() -> Response {
    Problem::new(StatusCode::BAD_REQUEST)
        .detail("the Idempotency-Key header is required: send a unique key, repeat it on a retry")
        .field("Idempotency-Key", "is missing")
        .into_response()
}

/// `idem-<scope>-<key>`, both escaped. The scope escapes `-` too, so no two (scope, key) pairs
/// share a stream.
pub(super) fn stream_for(scope: &str, key: &str) -> Result<StreamId, String> {
    let prefix = format!("idem-{}-", escape(scope, "_.:"));
    let id = format!("{prefix}{}", escape(key, "_-.:"));
    if id.len() > MAX_STREAM_ID {
        let room = MAX_STREAM_ID.saturating_sub(prefix.len());
        return Err(format!(
            "is too long: at most {room} characters (a character other than letters, digits \
             and _-.: counts as 3)"
        ));
    }
    StreamId::new(id).map_err(|e| e.to_string())
}

/// The request's fingerprint: a key reused for another request is refused, not replayed.
pub(super) fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), b" ", path.as_bytes(), b"\n", body] {
        hash.update(part);
    }
    hex::encode(hash.finalize())
}

/// Keeps ASCII letters, digits and `keep`; writes every other byte as `@XX`. `@` is never
/// kept, so the escaping is one-to-one.
fn escape(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("@{b:02X}"));
        }
    }
    out
}

/// The 400 for a key that cannot be used, saying why.
pub(super) fn bad_key(message: impl Into<String>) -> Response {
    let message = message.into();
    Problem::new(StatusCode::BAD_REQUEST)
        .detail(format!("the Idempotency-Key header {message}"))
        .field("Idempotency-Key", message)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saga_keys_map_to_readable_streams() {
        let id = stream_for("inventory", "9f1c:reserve").unwrap();
        assert_eq!(id.as_ref(), "idem-inventory-9f1c:reserve");
    }

    #[test]
    fn escaping_keeps_scopes_and_keys_apart() {
        let a = stream_for("a-b", "c").unwrap();
        let b = stream_for("a", "b-c").unwrap();
        assert_ne!(a, b);
        let spaced = stream_for("s", "a b/c@").unwrap();
        assert_eq!(spaced.as_ref(), "idem-s-a@20b@2Fc@40");
    }

    #[test]
    fn over_long_keys_are_refused_naming_the_header() {
        let e = stream_for("inventory", &"k".repeat(190)).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(stream_for("inventory", &"k".repeat(185)).is_ok());
    }
}
