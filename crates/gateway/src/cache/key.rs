//! Cache keys (RFC 9111 §2, §4.1): the primary key names the route, method, host and
//! normalised target; the secondary key is the request's values of the headers the stored
//! response's `Vary` names.

use std::sync::Arc;

use http::Method;
use http::header::{self, HeaderMap, HeaderName};

/// The methods whose responses are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheMethod {
    /// GET.
    Get,
    /// HEAD (also answered from a stored GET).
    Head,
}

impl CacheMethod {
    /// The cacheable method `m` is, if any.
    pub fn of(m: &Method) -> Option<Self> {
        match *m {
            Method::GET => Some(Self::Get),
            Method::HEAD => Some(Self::Head),
            _ => None,
        }
    }
}

/// The primary cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrimaryKey {
    /// The route's name: two routes never share an entry.
    pub route: Arc<str>,
    /// GET or HEAD.
    pub method: CacheMethod,
    /// The lowercase `Host` the client asked for (upstreams see it, so answers may differ).
    pub host: String,
    /// The normalised path and the query, as the client sent it.
    pub target: String,
}

impl PrimaryKey {
    /// The same key for another method.
    pub fn with_method(&self, method: CacheMethod) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }
}

/// The lowercase header names of the response's `Vary`; `None` for `Vary: *`.
pub fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    let items = response
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty());
    for item in items {
        if item == "*" {
            return None;
        }
        if let Ok(n) = HeaderName::from_bytes(item.as_bytes())
            && !names.contains(&n)
        {
            names.push(n);
        }
    }
    Some(names)
}

/// A secondary key: the request's normalised values of each `Vary`ed header (`None` when
/// the request lacked it).
pub type VaryValues = Vec<(HeaderName, Option<String>)>;

/// The request's values of `names`, normalised: field lines joined by commas and the
/// whitespace around list separators removed, which never changes their meaning (§4.1).
pub fn vary_values(names: &[HeaderName], request: &HeaderMap) -> VaryValues {
    names
        .iter()
        .map(|n| {
            let lines: Vec<&str> = request
                .get_all(n)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let joined = (!lines.is_empty()).then(|| {
                lines
                    .iter()
                    .flat_map(|l| l.split(','))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(",")
            });
            (n.clone(), joined)
        })
        .collect()
}

/// Whether a request matches a stored response's secondary key.
pub fn vary_matches(stored: &VaryValues, request: &HeaderMap) -> bool {
    let names: Vec<HeaderName> = stored.iter().map(|(n, _)| n.clone()).collect();
    vary_values(&names, request) == *stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn vary_lists_are_parsed_and_star_is_refused() {
        let mut h = HeaderMap::new();
        h.append("vary", HeaderValue::from_static("Accept-Language, accept"));
        h.append("vary", HeaderValue::from_static("Accept-Language"));
        let names = vary_names(&h).unwrap();
        assert_eq!(names, ["accept-language", "accept"]);
        h.append("vary", HeaderValue::from_static("*"));
        assert_eq!(vary_names(&h), None);
    }

    #[test]
    fn secondary_keys_ignore_list_whitespace_but_not_values() {
        let names = [HeaderName::from_static("accept-language")];
        let mut a = HeaderMap::new();
        a.insert("accept-language", HeaderValue::from_static("en, fr"));
        let stored = vary_values(&names, &a);
        let mut b = HeaderMap::new();
        b.insert("accept-language", HeaderValue::from_static("en,fr"));
        assert!(vary_matches(&stored, &b));
        b.insert("accept-language", HeaderValue::from_static("fr"));
        assert!(!vary_matches(&stored, &b));
        assert!(!vary_matches(&stored, &HeaderMap::new()));
        let absent = vary_values(&names, &HeaderMap::new());
        assert!(vary_matches(&absent, &HeaderMap::new()));
    }

    #[test]
    fn the_path_is_the_target_without_its_query() {
        let k = PrimaryKey {
            route: "r".into(),
            method: CacheMethod::Get,
            host: "h".into(),
            target: "/a/b?x=1".into(),
        };
        assert_eq!(k.path(), "/a/b");
        assert_eq!(k.with_method(CacheMethod::Head).method, CacheMethod::Head);
    }
}
