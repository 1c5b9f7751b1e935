//! The one error type of this crate, and how any error travelling through a stack is classified.
//!
//! Layers are generic over their inner service's error and box it (`BoxError`), as tower does;
//! whatever a layer itself refuses with is an [`Error`] inside that box. [`classify`] looks
//! through the box once, at the edge, so callers never match on message text.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// A boxed error, the error type every layer of this crate returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a layer refused or abandoned a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The propagated deadline passed; the call was not sent (or was abandoned).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The call's own timeout expired.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// The circuit breaker of `upstream` is open (or its half-open probes are all taken).
    #[error("circuit breaker for `{upstream}` is open")]
    CircuitOpen {
        /// The upstream whose breaker refused the call.
        upstream: Arc<str>,
    },
    /// The bulkhead of `upstream` is at its concurrency limit and its wait queue is full.
    #[error("bulkhead for `{upstream}` is full")]
    BulkheadFull {
        /// The upstream whose bulkhead refused the call.
        upstream: Arc<str>,
    },
    /// The rate limit was hit; the next call may be admitted after `retry_after`.
    #[error("rate limit exceeded, retry after {retry_after:?}")]
    RateLimited {
        /// The earliest time a retry can succeed.
        retry_after: Duration,
    },
    /// Discovery knows no routable instance of `service`.
    #[error("no healthy instance of `{service}`")]
    NoHealthyInstance {
        /// The service asked for.
        service: Arc<str>,
    },
    /// Connecting to or talking with the upstream failed. `connect` is true when the request
    /// cannot have reached the upstream (connection refused, DNS), which makes it safe to retry
    /// even when it is not idempotent.
    #[error("transport error{}: {source}", if *.connect { " while connecting" } else { "" })]
    Transport {
        /// Whether the failure happened before any byte of the request was sent.
        connect: bool,
        /// The underlying failure.
        source: BoxError,
    },
    /// A shared rate limiter's store could not answer (unreachable, too slow, failing); the
    /// request was not counted for sure. The string is for logs, not for clients.
    #[error("shared rate limiter unavailable: {0}")]
    LimiterUnavailable(String),
    /// A policy is invalid; `key` is its dotted path (`policies.users.retry.max_attempts`).
    #[error("invalid policy `{key}`: {reason}")]
    InvalidPolicy {
        /// The dotted path of the offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// A policy error at `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidPolicy {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            // The budget is spent: trying again cannot help this call.
            Self::DeadlineExceeded => ErrorClass::of(ErrorKind::Timeout).retryable(false),
            Self::Timeout(_) => ErrorClass::of(ErrorKind::Timeout),
            // Retrying into an open breaker or a full bulkhead only adds load.
            Self::CircuitOpen { .. } => ErrorClass::of(ErrorKind::Unavailable).retryable(false),
            Self::BulkheadFull { .. } => ErrorClass::of(ErrorKind::Unavailable).retryable(false),
            Self::RateLimited { .. } => ErrorClass::of(ErrorKind::RateLimited),
            Self::NoHealthyInstance { .. } => ErrorClass::of(ErrorKind::Unavailable),
            Self::Transport { .. } => ErrorClass::of(ErrorKind::Upstream),
            Self::LimiterUnavailable(_) => ErrorClass::of(ErrorKind::Unavailable),
            Self::InvalidPolicy { .. } => ErrorClass::of(ErrorKind::InvalidInput),
        }
    }
}

/// Finds this crate's [`Error`] in a boxed error, looking through its source chain.
pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<Error>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Classifies any error that came out of a stack. Errors this crate does not know are internal
/// and not retryable: endpoint services must wrap I/O failures in [`Error::Transport`].
pub fn classify(error: &(dyn std::error::Error + 'static)) -> ErrorClass {
    find(error).map_or(ErrorClass::of(ErrorKind::Internal), Classify::class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_sees_through_boxes_and_defaults_to_internal() {
        let boxed: BoxError = Box::new(Error::CircuitOpen {
            upstream: "users".into(),
        });
        let class = classify(boxed.as_ref());
        assert_eq!((class.kind.http_status(), class.retryable), (503, false));
        let other: BoxError = "something else".into();
        assert_eq!(classify(other.as_ref()).kind, ErrorKind::Internal);
    }
}
