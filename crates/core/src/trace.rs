//! Request correlation: W3C trace context and request ids.
//!
//! Both arrive in headers from untrusted callers, so both parse strictly and are replaced,
//! never passed on, when malformed.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::tracestate::{TraceState, trim_ows};

/// Trace flag: the caller recorded this trace.
pub const FLAG_SAMPLED: u8 = 0x01;
/// Trace flag (level 2): the trace id's right-most 7 bytes are random.
pub const FLAG_RANDOM: u8 = 0x02;

/// A parsed W3C `traceparent` header (<https://www.w3.org/TR/trace-context/>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16-byte trace id, never all zeros.
    pub trace_id: [u8; 16],
    /// 8-byte id of the calling span, never all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// A new trace, sampled, with random ids (so with the level-2 random flag set).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        while trace_id == [0; 16] {
            rng.fill(&mut trace_id);
        }
        while parent_id == [0; 8] {
            rng.fill(&mut parent_id);
        }
        Self {
            trace_id,
            parent_id,
            flags: FLAG_SAMPLED | FLAG_RANDOM,
        }
    }

    /// The same trace with a new span id: what this hop sends to the next one.
    pub fn child(&self) -> Self {
        let mut parent_id = [0u8; 8];
        while parent_id == [0; 8] {
            rand::rng().fill(&mut parent_id);
        }
        Self { parent_id, ..*self }
    }

    /// Parses a header value. Accepts version 00 exactly and, as the spec asks, future versions
    /// by their first four fields; refuses version `ff`, upper-case hex and all-zero ids.
    /// Surrounding spaces and tabs (HTTP's optional white space) are ignored.
    pub fn parse(value: &str) -> Option<Self> {
        let value = trim_ows(value);
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && (rest.is_some() || value.len() != 55) {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(trace)?;
        let parent_id: [u8; 8] = decode_hex(parent)?;
        let [flags] = decode_hex::<1>(flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED == FLAG_SAMPLED
    }
}

/// The whole W3C trace context of a hop: `traceparent` and the `tracestate` that may only
/// travel with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace and the span that sent it.
    pub parent: TraceParent,
    /// Vendor entries, passed on unchanged.
    pub state: Option<TraceState>,
}

impl TraceContext {
    /// Reads a request's trace context from all of its `traceparent` and `tracestate` header
    /// lines. `None` (the receiver starts a new trace and drops `tracestate`) when there is
    /// not exactly one `traceparent` line or it does not parse: a duplicated header cannot be
    /// told apart from a forged one.
    pub fn from_headers<'a>(
        traceparent: impl IntoIterator<Item = &'a str>,
        tracestate: impl IntoIterator<Item = &'a str>,
    ) -> Option<Self> {
        let mut lines = traceparent.into_iter();
        let (first, second) = (lines.next()?, lines.next());
        let parent = TraceParent::parse(first).filter(|_| second.is_none())?;
        Some(Self {
            parent,
            state: TraceState::from_headers(tracestate),
        })
    }

    /// A new trace with no vendor state.
    pub fn generate() -> Self {
        Self {
            parent: TraceParent::generate(),
            state: None,
        }
    }

    /// The same trace and state with a new span id: what this hop sends to the next one.
    pub fn child(&self) -> Self {
        Self {
            parent: self.parent.child(),
            state: self.state.clone(),
        }
    }

    /// The incoming context's child, or a new trace when there was none.
    pub fn continue_or_start(incoming: Option<&Self>) -> Self {
        incoming.map_or_else(Self::generate, Self::child)
    }
}

impl TraceParent {
    /// The `traceparent` header value, `00-{trace id}-{parent id}-{flags}` in lower-case hex,
    /// written into an array: hops write one per request, and formatting allocated.
    pub fn to_header_bytes(&self) -> [u8; 55] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        let mut at = 3;
        for part in [&self.trace_id[..], &self.parent_id[..], &[self.flags][..]] {
            for b in part {
                out[at] = DIGITS[usize::from(b >> 4)];
                out[at + 1] = DIGITS[usize::from(b & 0xf)];
                at += 2;
            }
            at += 1;
        }
        out
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_header_bytes();
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A request id: 1 to 128 visible ASCII characters from a conservative set, so it is safe to
/// echo in headers and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id (a UUID v4, hyphenated).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts an incoming id if it is well-formed; callers generate a new one otherwise.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:+=/@".contains(c);
        (!value.is_empty() && value.len() <= 128 && value.chars().all(ok))
            .then(|| Self(value.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example_and_round_trips() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for (flags, text) in [(0x00, "00"), (0x02, "02"), (0xff, "ff")] {
            let with = TraceParent { flags, ..tp };
            assert_eq!(
                with.to_header_bytes().as_slice(),
                format!("{}{text}", &VALID[..53]).as_bytes()
            );
        }
    }

    #[test]
    fn refuses_malformed_trace_parents() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn future_versions_parse_by_their_first_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceParent::parse(v).is_some());
    }

    #[test]
    fn surrounding_white_space_is_ignored() {
        for v in [
            " \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \t",
        ] {
            assert!(TraceParent::parse(v).is_some(), "{v:?}");
        }
    }

    #[test]
    fn future_versions_need_a_dash_after_the_flags() {
        let dot = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.more";
        assert!(TraceParent::parse(dot).is_none());
        let v00_trailing = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.";
        assert!(TraceParent::parse(v00_trailing).is_none());
    }

    #[test]
    fn a_future_version_is_answered_as_version_00() {
        let tp =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert!(
            tp.child()
                .to_string()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn generated_traces_are_sampled_and_flagged_random() {
        let tp = TraceParent::generate();
        assert!(tp.sampled());
        assert_eq!(tp.flags & FLAG_RANDOM, FLAG_RANDOM);
    }

    #[test]
    fn the_random_flag_of_the_caller_is_kept() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert_eq!(tp.child().flags, FLAG_RANDOM);
    }

    #[test]
    fn a_duplicated_traceparent_starts_a_new_trace() {
        let other = "00-12345678901234567890123456789012-1234567890123456-01";
        assert!(TraceContext::from_headers([VALID, other], ["foo=1"]).is_none());
        assert!(TraceContext::from_headers([VALID, VALID], []).is_none());
        let fresh = TraceContext::continue_or_start(None);
        assert!(fresh.state.is_none());
    }

    #[test]
    fn tracestate_travels_only_with_a_valid_traceparent() {
        let ctx = TraceContext::from_headers([VALID], ["foo=1", "bar=2"]).unwrap();
        assert_eq!(ctx.child().state.unwrap().as_str(), "foo=1,bar=2");
        assert!(TraceContext::from_headers(["00-bad"], ["foo=1"]).is_none());
        assert!(TraceContext::from_headers([], ["foo=1"]).is_none());
        let no_state = TraceContext::from_headers([VALID], ["foo=,bar=1"]).unwrap();
        assert!(no_state.state.is_none());
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let tp = TraceParent::parse(VALID).unwrap();
        let c = tp.child();
        assert_eq!(c.trace_id, tp.trace_id);
        assert_ne!(c.parent_id, tp.parent_id);
    }

    #[test]
    fn request_ids_are_refused_when_unsafe() {
        assert!(RequestId::parse("abc-123").is_some());
        assert!(RequestId::parse("has space").is_none());
        assert!(RequestId::parse("new\nline").is_none());
        assert!(RequestId::parse(&"a".repeat(129)).is_none());
        assert!(RequestId::parse(RequestId::generate().as_str()).is_some());
    }

    proptest! {
        #[test]
        fn generated_trace_parents_always_parse(_i in 0..100u32) {
            let tp = TraceParent::generate();
            prop_assert_eq!(TraceParent::parse(&tp.to_string()), Some(tp));
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = TraceParent::parse(&s);
            let _ = RequestId::parse(&s);
        }
    }
}
