//! The client's one error type.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// Why a registry call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The registry could not be reached (refused, reset, timed out).
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// The registry answered with an error status; `detail` is its problem detail.
    #[error("registry answered {status}: {detail}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The problem+json `detail`, or the body.
        detail: String,
    },
    /// The registry's answer could not be decoded.
    #[error("cannot decode the registry's answer: {0}")]
    Decode(String),
    /// The client options are invalid; the message names the field.
    #[error("invalid registry client options: {0}")]
    Options(String),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unreachable(_) => ErrorKind::Unavailable,
            Self::Status { status: 404, .. } => ErrorKind::NotFound,
            Self::Status { status: 401, .. } => ErrorKind::Unauthenticated,
            Self::Status {
                status: 400 | 413, ..
            }
            | Self::Options(_) => ErrorKind::InvalidInput,
            Self::Status { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            Self::Status { .. } | Self::Decode(_) => ErrorKind::Upstream,
        }
    }

    /// Whether the registry said the instance or service does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
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
    fn statuses_classify_by_kind() {
        let e = |status| Error::Status {
            status,
            detail: String::new(),
        };
        assert!(e(404).is_not_found());
        assert_eq!(e(503).kind(), ErrorKind::Unavailable);
        assert_eq!(e(400).kind(), ErrorKind::InvalidInput);
        assert!(Error::Unreachable("x".into()).class().retryable);
    }
}
