//! The client's one error type: what went wrong with a call, as data.

use std::time::Duration;

use bytes::Bytes;
use flotilla_core::error::Classify;
use flotilla_core::{Blame, ErrorClass, ErrorKind};
use flotilla_resilience::BoxError;
use http::StatusCode;

/// Why a call through [`crate::ServiceClient`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call was malformed (bad service name, path, header); nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Discovery knows no routable instance of the service.
    #[error("no healthy instance of `{service}`")]
    NoHealthyInstance {
        /// The service called.
        service: String,
    },
    /// The service's circuit breaker is open; nothing was sent.
    #[error("circuit breaker for `{service}` is open")]
    CircuitOpen {
        /// The service called.
        service: String,
    },
    /// The caller's deadline passed; the call was not sent, or was abandoned.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The call's own timeout expired after every attempt allowed.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// A local limit refused the call: the bulkhead is full or the rate limit was hit.
    #[error("call refused locally: {reason}")]
    Rejected {
        /// Which limit refused it.
        reason: String,
        /// When a rate limit will admit a call again.
        retry_after: Option<Duration>,
    },
    /// The upstream answered with a status of 400 or more.
    #[error("upstream answered {status}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The response body (a problem+json document, usually).
        body: Bytes,
    },
    /// Connecting to or talking with the upstream failed after every attempt allowed.
    #[error("transport error: {message}")]
    Transport {
        /// What failed.
        message: String,
        /// Whether it failed before anything was sent.
        connect: bool,
    },
    /// The upstream's response body was longer than the client's limit
    /// ([`crate::ClientBuilder::max_response_bytes`]).
    #[error("response body exceeds {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A body could not be encoded or decoded as JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An unexpected failure inside the client.
    #[error("internal client error: {0}")]
    Internal(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }

    /// Maps what came out of the policy stack to a typed error.
    pub(crate) fn from_stack(service: &str, e: BoxError) -> Self {
        use flotilla_resilience::Error as R;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(c) = cause {
            if let Some(big) = c.downcast_ref::<crate::endpoint::ResponseTooLarge>() {
                return Self::ResponseTooLarge { limit: big.limit };
            }
            cause = c.source();
        }
        match flotilla_resilience::error::find(e.as_ref()) {
            Some(R::DeadlineExceeded) => Self::DeadlineExceeded,
            Some(R::Timeout(d)) => Self::Timeout(*d),
            Some(R::CircuitOpen { .. }) => Self::CircuitOpen {
                service: service.to_owned(),
            },
            Some(R::NoHealthyInstance { .. }) => Self::NoHealthyInstance {
                service: service.to_owned(),
            },
            Some(R::BulkheadFull { .. }) => Self::Rejected {
                reason: "bulkhead full".into(),
                retry_after: None,
            },
            Some(R::RateLimited { retry_after }) => Self::Rejected {
                reason: "rate limited".into(),
                retry_after: Some(*retry_after),
            },
            Some(R::LimiterUnavailable(_)) => Self::Rejected {
                reason: "rate limiter unavailable".into(),
                retry_after: None,
            },
            Some(R::Transport { connect, source }) => Self::Transport {
                message: source.to_string(),
                connect: *connect,
            },
            Some(R::InvalidPolicy { .. }) | None => Self::Internal(e.to_string()),
        }
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidRequest(_) => ErrorClass::of(ErrorKind::InvalidInput).retryable(false),
            Self::NoHealthyInstance { .. } | Self::CircuitOpen { .. } => {
                ErrorClass::of(ErrorKind::Unavailable)
            }
            Self::DeadlineExceeded => ErrorClass::of(ErrorKind::Timeout).retryable(false),
            Self::Timeout(_) => ErrorClass::of(ErrorKind::Timeout),
            Self::Rejected { .. } => ErrorClass {
                kind: ErrorKind::RateLimited,
                blame: Blame::Internal,
                retryable: true,
            },
            Self::Status { status, .. } => status_class(*status),
            Self::Transport { .. } => ErrorClass::of(ErrorKind::Upstream),
            Self::Json(_) | Self::ResponseTooLarge { .. } => {
                ErrorClass::of(ErrorKind::Upstream).retryable(false)
            }
            Self::Internal(_) => ErrorClass::of(ErrorKind::Internal),
        }
    }
}

/// An upstream's status, seen from the caller: its 4xx is still the upstream's answer, so it
/// keeps the kind but is blamed upstream of us.
fn status_class(status: StatusCode) -> ErrorClass {
    let kind = match status.as_u16() {
        400 | 422 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        413 => ErrorKind::TooLarge,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Unavailable,
        504 => ErrorKind::Timeout,
        _ => ErrorKind::Upstream,
    };
    let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    ErrorClass {
        kind,
        blame: Blame::Upstream,
        retryable,
    }
}
