//! Byte ranges served from a stored complete response (RFC 9110 §14).
//!
//! Only one range of a stored `200` is served; a request for several ranges, or one whose
//! `Range` cannot be parsed, gets the whole response, which §14.2 allows ("A server MAY ignore
//! the Range header field"). Parsing is `http-range-header`'s.

use std::ops::RangeInclusive;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue};
use http::{Response, StatusCode};
use http_range_header::{EndPosition, StartPosition, parse_range_header};

use crate::problem::{Body, full};

/// What a `Range` asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// Serve the whole representation: no single, valid byte range was asked for.
    Whole,
    /// Serve these bytes as a `206`.
    Part(RangeInclusive<u64>),
    /// Nothing asked for exists: `416` (§15.5.17).
    Unsatisfiable,
}

/// Reads a `Range` value against a representation of `len` bytes.
pub(crate) fn select(range: &HeaderValue, len: u64) -> Ranged {
    let Some(parsed) = range.to_str().ok().and_then(|v| parse_range_header(v).ok()) else {
        return Ranged::Whole;
    };
    let [one] = parsed.ranges.as_slice() else {
        return Ranged::Whole;
    };
    let last = len.checked_sub(1);
    match (one.start, one.end, last) {
        // An empty representation has no bytes to select; §14.1.1's 416 would only confuse.
        (_, _, None) => Ranged::Whole,
        (StartPosition::Index(first), EndPosition::Index(end), _) if end < first => Ranged::Whole,
        (StartPosition::Index(first), _, Some(last)) if first > last => Ranged::Unsatisfiable,
        (StartPosition::Index(first), end, Some(last)) => Ranged::Part(first..=clamp(end, last)),
        // A suffix longer than the representation selects all of it (§14.1.2).
        (StartPosition::FromLast(n), _, Some(last)) => {
            Ranged::Part(len.saturating_sub(n).min(last)..=last)
        }
    }
}

fn clamp(end: EndPosition, last: u64) -> u64 {
    match end {
        EndPosition::Index(i) => i.min(last),
        EndPosition::LastByte => last,
    }
}

/// `full` (a complete `200` built from the store) narrowed to what `range` asks for.
pub(crate) fn apply(
    full_resp: Response<Body>,
    body: &bytes::Bytes,
    range: &HeaderValue,
) -> Response<Body> {
    let len = body.len() as u64;
    let (status, content_range, part) = match select(range, len) {
        Ranged::Whole => return full_resp,
        Ranged::Part(r) => {
            let (first, last) = (*r.start(), *r.end());
            let part = body.slice(as_index(first)..=as_index(last));
            (
                StatusCode::PARTIAL_CONTENT,
                format!("bytes {first}-{last}/{len}"),
                part,
            )
        }
        Ranged::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("bytes */{len}"),
            bytes::Bytes::new(),
        ),
    };
    let (mut parts, _) = full_resp.into_parts();
    parts.status = status;
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(part.len()));
    if let Ok(v) = HeaderValue::from_str(&content_range) {
        parts.headers.insert(CONTENT_RANGE, v);
    }
    Response::from_parts(parts, full(part))
}

/// A position inside a body already in memory, so it fits in `usize`.
fn as_index(pos: u64) -> usize {
    usize::try_from(pos).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Ranged, apply, select};
    use crate::problem::full;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    fn sel(v: &str, len: u64) -> Ranged {
        select(&HeaderValue::from_str(v).unwrap(), len)
    }

    #[test]
    fn one_byte_range_is_selected_as_rfc_9110_section_14_1_2_reads_it() {
        assert_eq!(sel("bytes=0-1", 11), Ranged::Part(0..=1));
        assert_eq!(sel("bytes=1-", 11), Ranged::Part(1..=10));
        assert_eq!(sel("bytes=-1", 11), Ranged::Part(10..=10));
        assert_eq!(sel("bytes=5-100", 11), Ranged::Part(5..=10), "clamped");
        assert_eq!(sel("bytes=-100", 11), Ranged::Part(0..=10), "longer suffix");
        assert_eq!(sel("bytes=11-", 11), Ranged::Unsatisfiable);
        assert_eq!(sel("bytes=20-30", 11), Ranged::Unsatisfiable);
    }

    #[test]
    fn anything_but_one_valid_byte_range_gets_the_whole_response() {
        for v in [
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=5-2",
            "bytes=-0",
            "garbage",
            "bytes=",
        ] {
            assert_eq!(sel(v, 11), Ranged::Whole, "{v}");
        }
        assert_eq!(sel("bytes=0-1", 0), Ranged::Whole, "empty body");
    }

    #[tokio::test]
    async fn a_part_is_a_206_with_content_range_and_its_own_length() {
        let body = bytes::Bytes::from_static(b"01234567890");
        let whole = http::Response::builder()
            .header("content-length", "11")
            .header("a", "1")
            .body(full(body.clone()))
            .unwrap();
        let part = apply(whole, &body, &HeaderValue::from_static("bytes=2-4"));
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], "bytes 2-4/11");
        assert_eq!(part.headers()["content-length"], "3");
        assert_eq!(part.headers()["a"], "1");
        let bytes = part.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"234");

        let whole = http::Response::new(full(body.clone()));
        let none = apply(whole, &body, &HeaderValue::from_static("bytes=50-"));
        assert_eq!(none.status(), 416);
        assert_eq!(none.headers()["content-range"], "bytes */11");
    }
}
