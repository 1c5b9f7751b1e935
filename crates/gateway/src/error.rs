//! The gateway's one error type, classified once so the edge can answer with the right status.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// Everything that can go wrong in the gateway: configuration, and per-request failures that
/// become problem+json responses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration broke a rule; `key` names the offending key (`routes[2].path`).
    #[error("invalid gateway configuration at `{key}`: {reason}")]
    Config {
        /// Dotted path of the bad key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request target cannot be normalised safely (bad escape, encoded slash, NUL).
    #[error("bad request path: {0}")]
    BadPath(String),
    /// The request was refused before routing (bad header, bad framing).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No route matches the request.
    #[error("no route matches {0}")]
    NoRoute(String),
    /// The request body is larger than the route allows.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The caller is not authenticated; the string is the `WWW-Authenticate` challenge.
    #[error("authentication required")]
    Unauthenticated {
        /// Challenge for the `WWW-Authenticate` header.
        challenge: String,
        /// Short reason safe to show the caller.
        reason: &'static str,
    },
    /// The caller is authenticated but lacks a required claim.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The caller's rate limit is exhausted; retry after `retry_after_secs`.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until a request would be allowed.
        retry_after_secs: u64,
    },
    /// No healthy upstream instance, or the route's breaker is open.
    #[error("upstream unavailable: {0}")]
    Unavailable(&'static str),
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream refused the connection, reset it, or spoke broken HTTP.
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// `Cache-Control: only-if-cached` and the cache holds no usable response (RFC 9111
    /// §5.2.1.7 answers 504).
    #[error("no stored response satisfies only-if-cached")]
    NotCached,
    /// A local failure (I/O on the listener, a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A configuration error at `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::BadPath(_) | Self::BadRequest(_) => ErrorKind::InvalidInput,
            Self::NoRoute(_) => ErrorKind::NotFound,
            Self::BodyTooLarge(_) => ErrorKind::TooLarge,
            Self::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Timeout | Self::NotCached => ErrorKind::Timeout,
            Self::Upstream(_) => ErrorKind::Upstream,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The message safe to send to a client: never the upstream's or our internals.
    pub fn public_detail(&self) -> String {
        match self {
            Self::Upstream(_) => "the upstream service failed to answer".into(),
            Self::Internal(_) => "the gateway failed to handle the request".into(),
            Self::Unauthenticated { reason, .. } => (*reason).into(),
            Self::NoRoute(_) => "no route matches this request".into(),
            other => other.to_string(),
        }
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_details_never_reach_the_client() {
        let e = Error::Upstream("connection refused at 10.0.0.7:8080".into());
        assert!(!e.public_detail().contains("10.0.0.7"));
        assert_eq!(e.kind().http_status(), 502);
        assert_eq!(Error::Timeout.kind().http_status(), 504);
        assert_eq!(Error::Unavailable("breaker open").kind().http_status(), 503);
    }
}
