//! Validators: the cache's own conditional requests to the origin, the client's conditional
//! requests answered from a response the cache holds (RFC 9110 §13), and refreshing stored
//! headers from a 304 (RFC 9111 §3.2, §4.3.4).

use http::header::{self, HeaderMap, HeaderName};

use super::policy::date_header;
use crate::headers::strip_hop_by_hop;

/// The client's `If-None-Match` / `If-Modified-Since`, taken off the request so the origin
/// sends a full response the cache can store; they are evaluated against it afterwards.
#[derive(Debug, Clone, Default)]
pub struct ClientConditions {
    if_none_match: Option<String>,
    if_modified_since: Option<std::time::SystemTime>,
}

impl ClientConditions {
    /// Removes the client's conditions from `headers` and returns them.
    pub fn take(headers: &mut HeaderMap) -> Self {
        let inm: Vec<String> = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let ims = date_header(headers, header::IF_MODIFIED_SINCE);
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
        Self {
            if_none_match: (!inm.is_empty()).then(|| inm.join(",")),
            if_modified_since: ims,
        }
    }

    /// Whether a 200 response with `headers` should reach this client as 304 Not Modified:
    /// `If-None-Match` by weak comparison of entity tags; otherwise `If-Modified-Since`
    /// against `Last-Modified` (RFC 9110 §13.2.2 order).
    pub fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(list) = &self.if_none_match {
            let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            return list.trim() == "*" || list.split(',').any(|t| weak_eq(t.trim(), etag.trim()));
        }
        match (
            self.if_modified_since,
            date_header(headers, header::LAST_MODIFIED),
        ) {
            (Some(since), Some(modified)) => modified <= since,
            _ => false,
        }
    }
}

/// Weak comparison (RFC 9110 §8.8.3.2): equal opaque tags, ignoring `W/`.
fn weak_eq(a: &str, b: &str) -> bool {
    let opaque = |t: &str| t.strip_prefix("W/").unwrap_or(t).to_owned();
    !a.is_empty() && opaque(a) == opaque(b)
}

/// Headers a 304 carries from the 200 it stands for (RFC 9110 §15.4.5).
const NOT_MODIFIED_KEEPS: [HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
];

/// The headers of a 304 answering a client whose condition matched `full`.
pub fn not_modified_headers(full: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in NOT_MODIFIED_KEEPS.iter().chain([&header::AGE]) {
        for v in full.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Adds the stored response's validators to the cache's request to the origin.
pub fn add_validators(request: &mut HeaderMap, stored: &HeaderMap) {
    if let Some(etag) = stored.get(header::ETAG) {
        request.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = stored.get(header::LAST_MODIFIED) {
        request.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
}

/// Whether the stored response has a validator a conditional request can use.
pub fn has_validator(stored: &HeaderMap) -> bool {
    stored.contains_key(header::ETAG) || stored.contains_key(header::LAST_MODIFIED)
}

/// Fields a 304 never changes in the stored response. `Content-Length`, `Content-Encoding`,
/// `Content-Range` and `Content-MD5` describe the stored body, which the 304 does not replace
/// (RFC 9111 §3.2 excepts the fields "the cache's stored response depends upon"); the `ETag`
/// is the validator the 304 answered, so it stays the stored body's own; `Age` is recomputed
/// from the 304's arrival; `Set-Cookie` because the entry is shared, and one client's cookie
/// must never reach another.
const NOT_UPDATED: [&str; 7] = [
    "content-length",
    "content-encoding",
    "content-range",
    "content-md5",
    "etag",
    "age",
    "set-cookie",
];

/// RFC 9111 §3.2: the stored headers updated with a 304's. Every end-to-end field the 304
/// carries replaces the stored one, except the [`NOT_UPDATED`] ones. Hop-by-hop fields
/// describe the connection to the origin and are never stored.
pub fn refresh_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut incoming = not_modified.clone();
    strip_hop_by_hop(&mut incoming, false);
    let mut out = stored.clone();
    let skip = |n: &HeaderName| NOT_UPDATED.contains(&n.as_str());
    for name in incoming.keys().filter(|n| !skip(n)) {
        out.remove(name);
        for v in incoming.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_star() {
        let full = map(&[("etag", "W/\"v1\"")]);
        let mut req = map(&[("if-none-match", "\"v0\", \"v1\"")]);
        let c = ClientConditions::take(&mut req);
        assert!(!req.contains_key("if-none-match"), "taken off the request");
        assert!(c.not_modified(&full));
        let mut other = map(&[("if-none-match", "\"v2\"")]);
        assert!(!ClientConditions::take(&mut other).not_modified(&full));
        let mut star = map(&[("if-none-match", "*")]);
        assert!(ClientConditions::take(&mut star).not_modified(&full));
        assert!(!ClientConditions::take(&mut star.clone()).not_modified(&HeaderMap::new()));
    }

    #[test]
    fn if_modified_since_applies_only_without_if_none_match() {
        let full = map(&[
            ("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT"),
            ("etag", "\"a\""),
        ]);
        let mut later = map(&[("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT")]);
        assert!(ClientConditions::take(&mut later).not_modified(&full));
        let mut earlier = map(&[("if-modified-since", "Sat, 31 Oct 2026 00:00:00 GMT")]);
        assert!(!ClientConditions::take(&mut earlier).not_modified(&full));
        let mut both = map(&[
            ("if-modified-since", "Mon, 02 Nov 2026 00:00:00 GMT"),
            ("if-none-match", "\"b\""),
        ]);
        assert!(!ClientConditions::take(&mut both).not_modified(&full));
    }

    #[test]
    fn a_304_replaces_stored_fields_but_not_the_length() {
        let stored = map(&[
            ("content-length", "5"),
            ("cache-control", "max-age=1"),
            ("x-kept", "1"),
        ]);
        let nm = map(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("age", "3"),
        ]);
        let out = refresh_headers(&stored, &nm);
        assert_eq!(out["cache-control"], "max-age=60");
        assert_eq!(out["content-length"], "5");
        assert_eq!(out["x-kept"], "1");
        assert!(!out.contains_key("age"));
    }

    #[test]
    fn a_304_never_merges_set_cookie_or_hop_by_hop_fields() {
        let stored = map(&[("etag", "\"a\""), ("cache-control", "max-age=1")]);
        let nm = map(&[
            ("set-cookie", "session=alice"),
            ("connection", "x-origin-hop"),
            ("x-origin-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "max-age=60"),
        ]);
        let out = refresh_headers(&stored, &nm);
        for name in [
            "set-cookie",
            "connection",
            "x-origin-hop",
            "keep-alive",
            "transfer-encoding",
        ] {
            assert!(!out.contains_key(name), "{name} must not be stored");
        }
        assert_eq!(out["cache-control"], "max-age=60");
    }

    #[test]
    fn a_304_never_replaces_the_fields_the_stored_body_depends_on() {
        let kept = [
            ("content-encoding", "gzip"),
            ("content-range", "bytes 0-4/5"),
            ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
            ("etag", "\"a\""),
        ];
        let stored = map(&kept);
        let nm = map(&[
            ("content-encoding", "br"),
            ("content-range", "bytes 0-1/2"),
            ("content-md5", "other"),
            ("etag", "\"b\""),
            ("cache-control", "max-age=60"),
        ]);
        let out = refresh_headers(&stored, &nm);
        for (name, value) in kept {
            assert_eq!(out[name], value, "{name} kept from the stored response");
        }
        assert_eq!(out["cache-control"], "max-age=60");
    }

    #[test]
    fn validators_are_copied_from_the_stored_response() {
        let stored = map(&[
            ("etag", "\"x\""),
            ("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT"),
        ]);
        let mut req = HeaderMap::new();
        add_validators(&mut req, &stored);
        assert_eq!(req["if-none-match"], "\"x\"");
        assert_eq!(req["if-modified-since"], "Sun, 01 Nov 2026 00:00:00 GMT");
        assert!(has_validator(&stored));
        assert!(!has_validator(&HeaderMap::new()));
    }
}
