//! Request matchers and the deterministic precedence between routes.
//!
//! Order (first difference decides): higher `priority`; then path kind — exact, template,
//! template with catch-all, prefix; then more literal segments; then more segments; then more
//! method/host/header conditions; then position in the config file.

use std::cmp::Reverse;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::Error;
use crate::config::RouteConfig;
use crate::path::NormalPath;
use crate::template::{Params, Template};

/// How a route matches the path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// A template (exact when it has no parameters).
    Template(Template),
    /// A prefix of whole segments.
    Prefix(Vec<String>),
}

/// Everything a route checks before it is chosen.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The path condition.
    pub path: PathMatch,
    methods: Vec<Method>,
    hosts: Vec<String>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    priority: i32,
}

/// The parts of a request the matcher looks at.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Host without port, lowercase.
    pub host: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The normalised path.
    pub path: &'a NormalPath,
}

/// A sort key implementing the documented precedence; smaller sorts first.
pub type Rank = (
    Reverse<i32>,
    u8,
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    usize,
);

impl Matcher {
    /// Compiles a route's match conditions; `key` is `routes[i]`.
    pub fn build(cfg: &RouteConfig, key: &str) -> Result<Self, Error> {
        let path = match (&cfg.path, &cfg.prefix) {
            (Some(p), None) => PathMatch::Template(
                Template::parse(p).map_err(|r| Error::config(format!("{key}.path"), r))?,
            ),
            (None, Some(p)) => {
                let norm = NormalPath::parse(p)
                    .map_err(|e| Error::config(format!("{key}.prefix"), e.to_string()))?;
                PathMatch::Prefix(norm.segments)
            }
            _ => {
                return Err(Error::config(
                    key,
                    "exactly one of `path` or `prefix` is required",
                ));
            }
        };
        let methods = cfg
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    Error::config(
                        format!("{key}.methods[{i}]"),
                        format!("{m:?} is not a method"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let hosts = cfg.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let headers = build_headers(cfg, key)?;
        Ok(Self {
            path,
            methods,
            hosts,
            headers,
            priority: cfg.priority,
        })
    }

    /// The precedence key of this matcher at config position `index`.
    pub fn rank(&self, index: usize) -> Rank {
        let (kind, literals, len) = match &self.path {
            PathMatch::Template(t) if t.is_exact() => (0, t.literal_count(), t.segments.len()),
            PathMatch::Template(t) if !t.has_catch_all() => {
                (1, t.literal_count(), t.segments.len())
            }
            PathMatch::Template(t) => (2, t.literal_count(), t.segments.len()),
            PathMatch::Prefix(p) => (3, p.len(), p.len()),
        };
        let conditions = self.methods.len().min(1) + self.hosts.len().min(1) + self.headers.len();
        (
            Reverse(self.priority),
            kind,
            Reverse(literals),
            Reverse(len),
            Reverse(conditions),
            index,
        )
    }

    /// Whether the request matches; the captured parameters when it does.
    pub fn matches(&self, req: &RequestView<'_>) -> Option<Params> {
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return None;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| host_matches(h, req.host)) {
            return None;
        }
        if !self
            .headers
            .iter()
            .all(|(n, v)| header_matches(req.headers, n, v.as_ref()))
        {
            return None;
        }
        match &self.path {
            PathMatch::Template(t) => t.matches(&req.path.segments),
            PathMatch::Prefix(p) => req.path.segments.starts_with(p).then(Params::new),
        }
    }
}

fn build_headers(
    cfg: &RouteConfig,
    key: &str,
) -> Result<Vec<(HeaderName, Option<HeaderValue>)>, Error> {
    cfg.headers
        .iter()
        .map(|(name, value)| {
            let k = format!("{key}.headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::config(&k, "not a valid header name"))?;
            let v = if value == "*" {
                None
            } else {
                Some(
                    HeaderValue::from_str(value)
                        .map_err(|_| Error::config(&k, "not a valid header value"))?,
                )
            };
            Ok((n, v))
        })
        .collect()
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1 && host.ends_with(suffix) && {
                host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
        None => pattern == host,
    }
}

fn header_matches(headers: &HeaderMap, name: &HeaderName, value: Option<&HeaderValue>) -> bool {
    match value {
        None => headers.contains_key(name),
        Some(v) => headers.get_all(name).iter().any(|h| h == v),
    }
}

/// The authority a request is addressed to, `host[:port]` in lowercase: the URI's (HTTP/2
/// `:authority` or an absolute-form target), which wins over `Host` (RFC 9112 §3.2.2), else
/// `Host`. Routing, the cache key and the `Host` sent upstream all use this one value.
pub fn request_authority(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    let raw = match uri.authority() {
        // Without any userinfo: it is not part of the host.
        Some(a) => match a.port() {
            Some(p) => format!("{}:{p}", a.host()),
            None => a.host().to_owned(),
        },
        None => headers
            .get(http::header::HOST)?
            .to_str()
            .ok()?
            .trim()
            .to_owned(),
    };
    Some(raw.to_ascii_lowercase())
}

/// The host part of [`request_authority`], without the port.
pub fn host_of(authority: &str) -> &str {
    strip_port(authority)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(host_matches("example.com", "example.com"));
    }

    #[test]
    fn the_uri_authority_wins_over_host() {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "Other.Example".parse().unwrap());
        let absolute: http::Uri = "http://user@API.example:8080/x".parse().unwrap();
        assert_eq!(
            request_authority(&absolute, &h).as_deref(),
            Some("api.example:8080")
        );
        let origin_form: http::Uri = "/x".parse().unwrap();
        assert_eq!(
            request_authority(&origin_form, &h).as_deref(),
            Some("other.example")
        );
        assert_eq!(host_of("api.example:8080"), "api.example");
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.b:8080"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.b"), "a.b");
    }
}
