//! RFC 9111 §4.4: besides its own target, a successful unsafe request invalidates the URIs in
//! the response's `Location` and `Content-Location`, but only on the same origin ("a cache
//! MUST NOT invalidate a URI ... if the host part of that URI differs from the host part in
//! the target URI"), so one origin cannot flush another's entries.

use http::HeaderMap;
use http::header::{CONTENT_LOCATION, LOCATION};

use crate::path::NormalPath;

/// The cache targets (normalised path and query, as the cache keys them) named by the
/// response's `Location` and `Content-Location` that share the request's `authority`.
/// `request_target` is the request's own, for resolving a relative reference.
pub(crate) fn related_targets(
    authority: &str,
    request_target: &str,
    headers: &HeaderMap,
) -> Vec<String> {
    if authority.is_empty() {
        return Vec::new();
    }
    [LOCATION, CONTENT_LOCATION]
        .iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .filter_map(|reference| same_origin_target(authority, request_target, reference.trim()))
        .collect()
}

fn same_origin_target(authority: &str, base: &str, reference: &str) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or_default();
    let local = match scheme_relative(reference) {
        Some(rest) => {
            let (ref_authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
            if !ref_authority.eq_ignore_ascii_case(authority) {
                return None;
            }
            path
        }
        None => reference,
    };
    let (path, query) = match local.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (local, None),
    };
    let absolute = match path {
        "" => "/".to_owned(),
        p if p.starts_with('/') => p.to_owned(),
        // A relative path is resolved against the request target's directory (RFC 3986 §5.2).
        p => format!("{}{p}", base_directory(base)),
    };
    let mut target = NormalPath::parse(&absolute).ok()?.encoded();
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Some(target)
}

/// The part after `http://`, `https://` or `//`; `None` for a reference without a scheme or
/// an authority. Another scheme (`mailto:`) yields an empty authority, which never matches.
fn scheme_relative(reference: &str) -> Option<&str> {
    if let Some(rest) = reference.strip_prefix("//") {
        return Some(rest);
    }
    let end = reference.find([':', '/', '?'])?;
    let (scheme, rest) = reference.split_at(end);
    let rest = rest.strip_prefix(':')?;
    let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    Some(match rest.strip_prefix("//") {
        Some(after) if http => after,
        _ => "",
    })
}

fn base_directory(target: &str) -> &str {
    let path = target.split('?').next().unwrap_or_default();
    path.rfind('/').map_or("/", |i| &path[..=i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(pairs: &[(&'static str, &'static str)]) -> Vec<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        related_targets("api.test:8080", "/orders/new?x=1", &h)
    }

    #[test]
    fn same_origin_references_are_resolved_to_cache_targets() {
        assert_eq!(
            targets(&[
                ("location", "/orders/7?v=1#top"),
                ("content-location", "7/../8")
            ]),
            ["/orders/7?v=1", "/orders/8"]
        );
        assert_eq!(
            targets(&[("location", "HTTP://API.test:8080/a/%62")]),
            ["/a/b"]
        );
        assert_eq!(targets(&[("location", "//api.test:8080")]), ["/"]);
    }

    #[test]
    fn another_origin_or_scheme_is_never_invalidated() {
        for other in [
            "http://api.test/orders/7",
            "http://evil.test:8080/orders/7",
            "//other.test/x",
            "mailto:a@api.test:8080",
            "http://u@api.test:8080/x",
        ] {
            assert!(targets(&[("location", other)]).is_empty(), "{other}");
        }
    }
}
