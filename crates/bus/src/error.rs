//! The bus's one error type, classified as data so edges never match on message text.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind, EventError, NameError};

/// Why a bus operation failed, and what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name (topic, pattern, group) broke its rules. Fix the input; do not retry.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The event envelope is invalid. Fix the event; do not retry.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Some other argument is invalid; the message names it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The event is larger than the backend or the edge accepts.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The group, dead letter or subscription named does not exist.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// What was looked up (`group`, `dead letter`).
        what: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The request contradicts existing state (a group re-declared with another pattern).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The receipt's lease expired and the message was (or may be) handed to another consumer,
    /// so this ack or nack had no effect. Not retryable: the new holder settles the message.
    #[error("lease lost: the message was redelivered after its lease expired")]
    LeaseLost,
    /// This backend declares it cannot honour this part of the contract (see its
    /// [`Capabilities`](crate::Capabilities)). Nothing was changed.
    #[error("not supported by the {backend} backend: {feature}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The feature it lacks.
        feature: &'static str,
    },
    /// The backend cannot be reached or refused for a transient reason; retry after a backoff.
    /// For `publish`, the event may or may not be stored: retry with the same id (dedupe
    /// makes the retry safe).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way retrying will not fix (corrupt data, a bug).
    #[error("backend failure: {0}")]
    Backend(String),
    /// The bus or subscription has been shut down.
    #[error("the bus is shut down")]
    Closed,
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        let kind = match self {
            Self::Name(_) | Self::Event(_) | Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict(_) | Self::LeaseLost => ErrorKind::Conflict,
            Self::Unsupported { .. } => return ErrorClass::of(ErrorKind::InvalidInput),
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Backend(_) => ErrorKind::Internal,
            Self::Closed => return ErrorClass::of(ErrorKind::Unavailable).retryable(false),
        };
        ErrorClass::of(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_backend_failures_are_retryable_and_input_errors_are_not() {
        assert!(Error::Unavailable("down".into()).class().retryable);
        assert!(!Error::InvalidInput("x".into()).class().retryable);
        assert!(!Error::LeaseLost.class().retryable);
        assert_eq!(
            Error::TooLarge { size: 2, limit: 1 }.kind(),
            ErrorKind::TooLarge
        );
    }
}
