//! Per-route CORS (the Fetch standard's CORS protocol), answered by the gateway.
//!
//! Written here rather than taken from `tower_http::cors` because the gateway needs what that
//! layer does not do: only `OPTIONS` with `Access-Control-Request-Method` is a preflight (a
//! plain `OPTIONS` still reaches the upstream), a preflight is answered `204` before auth and
//! rate limits, a disallowed origin gets no CORS header at all, the upstream's own CORS
//! headers are replaced, and a bad combination is a config error naming the key, not a panic.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::Error;
use crate::config::CorsConfig;
use crate::problem::{Body, full};

/// Response headers the gateway owns on a CORS route (the upstream's copies are dropped).
const OWNED: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// A route's compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None` = any origin (`*`).
    origins: Option<Vec<HeaderValue>>,
    methods: HeaderValue,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

impl Cors {
    /// Compiles `cfg` at config key `key`.
    pub fn build(cfg: &CorsConfig, key: &str) -> Result<Self, Error> {
        let k = |s: &str| format!("{key}.{s}");
        let any = |list: &[String]| list.iter().any(|v| v == "*");
        if cfg.allow_origins.is_empty() {
            return Err(Error::config(
                k("allow_origins"),
                "list at least one origin, or \"*\"",
            ));
        }
        if cfg.allow_credentials {
            for (name, list) in [
                ("allow_origins", &cfg.allow_origins),
                ("allow_methods", &cfg.allow_methods),
                ("allow_headers", &cfg.allow_headers),
                ("expose_headers", &cfg.expose_headers),
            ] {
                if any(list) {
                    return Err(Error::config(
                        k(name),
                        "\"*\" cannot be combined with allow_credentials = true",
                    ));
                }
            }
        }
        let origins = if any(&cfg.allow_origins) {
            None
        } else {
            Some(origins(&cfg.allow_origins, &k("allow_origins"))?)
        };
        Ok(Self {
            origins,
            methods: methods(&cfg.allow_methods, &k("allow_methods"))?,
            headers: names(&cfg.allow_headers, &k("allow_headers"))?,
            expose: names(&cfg.expose_headers, &k("expose_headers"))?,
            credentials: cfg.allow_credentials,
            max_age: cfg
                .max_age
                .map(|d: Duration| HeaderValue::from(d.as_secs())),
        })
    }

    /// Whether `req` is a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_preflight<B>(req: &Request<B>) -> bool {
        req.method() == Method::OPTIONS
            && req.headers().contains_key(header::ORIGIN)
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// For a preflight, the method of the actual request it asks about.
    pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
        if method != Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
            return None;
        }
        let asked = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        Method::from_bytes(asked.as_bytes()).ok()
    }

    /// The gateway's `204` answer to a preflight from `origin`; without CORS headers when the
    /// origin is not allowed, so the browser refuses the actual request.
    pub fn preflight(&self, origin: Option<&HeaderValue>) -> Response<Body> {
        let mut resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static(PREFLIGHT_VARY));
        if let Some(allowed) = self.allowed(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            self.credentials_header(h);
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
            if let Some(v) = &self.headers {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            if let Some(v) = &self.max_age {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
            }
        }
        resp
    }

    /// Sets the CORS headers of an actual response to a request from `origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        for name in &OWNED {
            h.remove(name);
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(allowed) = self.allowed(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            self.credentials_header(h);
            if let Some(v) = &self.expose {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, or None when it is not allowed.
    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                .then(|| origin.clone()),
        }
    }

    fn credentials_header(&self, h: &mut HeaderMap) {
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Serialized origins (`scheme://host[:port]`, nothing after).
fn origins(list: &[String], key: &str) -> Result<Vec<HeaderValue>, Error> {
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let bad = || {
                Error::config(
                    format!("{key}[{i}]"),
                    format!("{o:?} is not an origin like \"https://app.example.com\""),
                )
            };
            let uri: http::Uri = o.parse().map_err(|_| bad())?;
            let bare = uri.scheme().is_some()
                && uri.authority().is_some()
                && !o.ends_with('/')
                && uri.path_and_query().is_none_or(|p| p.as_str() == "/");
            if !bare {
                return Err(bad());
            }
            HeaderValue::from_str(o).map_err(|_| bad())
        })
        .collect()
}

fn methods(list: &[String], key: &str) -> Result<HeaderValue, Error> {
    if list.is_empty() {
        return Ok(HeaderValue::from_static("GET, HEAD, POST"));
    }
    for (i, m) in list.iter().enumerate() {
        if m != "*" && Method::from_bytes(m.as_bytes()).is_err() {
            return Err(Error::config(
                format!("{key}[{i}]"),
                format!("{m:?} is not a method"),
            ));
        }
    }
    joined(list, key)
}

fn names(list: &[String], key: &str) -> Result<Option<HeaderValue>, Error> {
    if list.is_empty() {
        return Ok(None);
    }
    for (i, n) in list.iter().enumerate() {
        if n != "*" && HeaderName::from_bytes(n.as_bytes()).is_err() {
            return Err(Error::config(
                format!("{key}[{i}]"),
                format!("{n:?} is not a header name"),
            ));
        }
    }
    joined(list, key).map(Some)
}

fn joined(list: &[String], key: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(&list.join(", ")).map_err(|_| Error::config(key, "not a header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(toml_text: &str) -> Result<Cors, Error> {
        let cfg: CorsConfig = toml::from_str(toml_text).unwrap();
        Cors::build(&cfg, "routes[0].cors")
    }

    fn key_of(e: Error) -> String {
        match e {
            Error::Config { key, .. } => key,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn wildcards_with_credentials_are_refused_naming_the_key() {
        let e = cors("allow_origins = [\"*\"]\nallow_credentials = true").unwrap_err();
        assert_eq!(key_of(e), "routes[0].cors.allow_origins");
        let e = cors(
            "allow_origins = [\"https://a.test\"]\nallow_headers = [\"*\"]\nallow_credentials = true",
        )
        .unwrap_err();
        assert_eq!(key_of(e), "routes[0].cors.allow_headers");
    }

    #[test]
    fn origins_must_be_bare_origins() {
        for bad in ["https://a.test/path", "https://a.test/", "a.test", ""] {
            let e = cors(&format!("allow_origins = [{bad:?}]")).unwrap_err();
            assert_eq!(key_of(e), "routes[0].cors.allow_origins[0]", "{bad}");
        }
        assert!(cors("allow_origins = [\"http://127.0.0.1:8080\"]").is_ok());
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing() {
        let c = cors("allow_origins = [\"https://a.test\"]\nallow_credentials = true").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        c.decorate(Some(&HeaderValue::from_static("https://evil.test")), &mut h);
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(h[header::VARY], "Origin");
        let mut h = HeaderMap::new();
        c.decorate(Some(&HeaderValue::from_static("https://a.test")), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }
}
