//! Error classification shared by every crate.
//!
//! Each crate has its own `Error` type; each of them can say, as data, what kind of failure it
//! is, who is to blame and whether retrying may help. Edges (the HTTP layer, the CLI) turn an
//! [`ErrorClass`] into a status code or exit code once, instead of matching on message text.

use serde::{Deserialize, Serialize};

/// What kind of failure happened. The set is closed: new crates map onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input was malformed or broke a rule (HTTP 400/422).
    InvalidInput,
    /// The thing asked for does not exist (404).
    NotFound,
    /// A precondition or optimistic-concurrency check failed (409/412).
    Conflict,
    /// The caller is not authenticated (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// The request or payload is too large (413).
    TooLarge,
    /// A limit was hit: rate limit, bulkhead, retry budget (429).
    RateLimited,
    /// Nothing can serve the request right now: open breaker, no healthy instance (503).
    Unavailable,
    /// A deadline or timeout expired (504).
    Timeout,
    /// A dependency answered wrongly or the connection to it failed (502).
    Upstream,
    /// A bug or an unexpected local failure (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status an edge should answer with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput => 400,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Timeout => 504,
            Self::Upstream => 502,
            Self::Internal => 500,
        }
    }
}

/// Who is at fault: the caller, the callee, or us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The party that sent the request (bad input, missing credentials).
    Downstream,
    /// A dependency we called (refused, timed out, answered 5xx).
    Upstream,
    /// This process.
    Internal,
}

/// A failure's classification, carried as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorClass {
    /// What happened.
    pub kind: ErrorKind,
    /// Who is at fault.
    pub blame: Blame,
    /// Whether the same request may succeed if tried again (after a backoff).
    pub retryable: bool,
}

impl ErrorClass {
    /// A classification with the usual blame and retryability for `kind`.
    pub const fn of(kind: ErrorKind) -> Self {
        let (blame, retryable) = match kind {
            ErrorKind::InvalidInput
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::TooLarge => (Blame::Downstream, false),
            ErrorKind::RateLimited => (Blame::Downstream, true),
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Upstream => {
                (Blame::Upstream, true)
            }
            ErrorKind::Internal => (Blame::Internal, false),
        };
        Self {
            kind,
            blame,
            retryable,
        }
    }

    /// The same class with `retryable` replaced.
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

/// Implemented by every crate's `Error` so edges classify without downcasting.
pub trait Classify {
    /// This error's classification.
    fn class(&self) -> ErrorClass;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_follow_http_semantics() {
        let c = ErrorClass::of(ErrorKind::Timeout);
        assert_eq!(
            (c.blame, c.retryable, c.kind.http_status()),
            (Blame::Upstream, true, 504)
        );
        let c = ErrorClass::of(ErrorKind::InvalidInput);
        assert_eq!(
            (c.blame, c.retryable, c.kind.http_status()),
            (Blame::Downstream, false, 400)
        );
        assert!(
            !ErrorClass::of(ErrorKind::Upstream)
                .retryable(false)
                .retryable
        );
    }
}
