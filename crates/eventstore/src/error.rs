//! The event store's one error type.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind, StreamId};
use uuid::Uuid;

use crate::model::ExpectedVersion;

/// Why an event-store operation failed. Callers match on the variant (or on [`Error::kind`]),
/// never on the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The stream was not at the expected version; nothing was written. `actual` is the
    /// stream's version (`None`: the stream has no events). Reload and decide again.
    #[error("stream {stream}: expected version {expected}, but it is at {}", fmt_version(*.actual))]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// What the stream's version really is.
        actual: Option<u64>,
    },
    /// An event id was already stored with different content, in another stream, or the
    /// retried batch only partly matches what is stored. Nothing was written.
    #[error("event {id}: {reason}")]
    IdempotencyViolation {
        /// The event id at fault.
        id: Uuid,
        /// How the stored event differs.
        reason: String,
    },
    /// The stream was deleted: it can no longer be read by stream or appended to.
    #[error("stream {stream} is deleted")]
    StreamDeleted {
        /// The deleted stream.
        stream: StreamId,
    },
    /// The request broke a rule (an empty batch, a limit of zero, a snapshot beyond the
    /// stream's version); the message names the bad value.
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// A persistent subscriber's handler failed on the event at `position`; its checkpoint
    /// stays before that event, so it is delivered again when the subscription restarts.
    #[error("subscriber {subscriber} failed at position {position}: {message}")]
    Handler {
        /// The subscriber.
        subscriber: String,
        /// The event it failed on.
        position: u64,
        /// What the handler said.
        message: String,
    },
    /// The storage engine failed. `retryable` says whether the same call may succeed later
    /// (a lost connection) or not (a schema error). For an append, an error here means the
    /// append may or may not be stored: retry with the same event ids, which is idempotent.
    #[error("storage: {message}")]
    Storage {
        /// What the engine said.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
    },
}

fn fmt_version(v: Option<u64>) -> String {
    v.map_or_else(|| "no stream".to_owned(), |v| v.to_string())
}

impl Error {
    /// A storage failure that may pass if retried.
    pub fn storage(message: impl std::fmt::Display) -> Self {
        Self::Storage {
            message: message.to_string(),
            retryable: true,
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
            Self::WrongExpectedVersion { .. } | Self::IdempotencyViolation { .. } => {
                ErrorClass::of(ErrorKind::Conflict)
            }
            Self::StreamDeleted { .. } => ErrorClass::of(ErrorKind::NotFound),
            Self::InvalidInput(_) => ErrorClass::of(ErrorKind::InvalidInput),
            Self::Handler { .. } => ErrorClass::of(ErrorKind::Internal),
            Self::Storage { retryable, .. } => {
                ErrorClass::of(ErrorKind::Unavailable).retryable(*retryable)
            }
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
