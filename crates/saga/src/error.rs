//! The saga crate's one error type.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// Why a saga operation failed. Match on the variant (or [`Error::kind`]), never on the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A definition broke a rule; `field` names where (`steps[1].action.http.path`).
    #[error("invalid saga definition: {field}: {reason}")]
    Definition {
        /// The field at fault, as written in the definition file.
        field: String,
        /// The rule it broke.
        reason: String,
    },
    /// A request's input broke a rule; `field` names which.
    #[error("invalid {field}: {reason}")]
    Input {
        /// The field at fault.
        field: String,
        /// The rule it broke.
        reason: String,
    },
    /// A definition file could not be parsed at all.
    #[error("cannot parse saga definition: {0}")]
    Parse(String),
    /// No definition of that name (and version) is registered.
    #[error("no saga definition named {name:?}{}", .version.map(|v| format!(" at version {v}")).unwrap_or_default())]
    UnknownDefinition {
        /// The name asked for.
        name: String,
        /// The version asked for, if one was.
        version: Option<u32>,
    },
    /// No instance with that id exists.
    #[error("no saga instance {0}")]
    NotFound(String),
    /// The request does not fit the instance's state (cancel after the pivot, or once finished).
    #[error("saga instance {id}: {reason}")]
    InvalidState {
        /// The instance.
        id: String,
        /// Why the request does not apply.
        reason: String,
    },
    /// The instance's stream holds an event this version cannot read.
    #[error("saga stream {stream} is corrupt at version {version}: {reason}")]
    Corrupt {
        /// The stream.
        stream: String,
        /// The event's version.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] flotilla_eventstore::Error),
}

impl Error {
    /// A definition error at `field`.
    pub fn definition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Definition {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An input error at `field`.
    pub fn input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Input {
            field: field.into(),
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
            Self::Definition { .. } | Self::Input { .. } | Self::Parse(_) => {
                ErrorClass::of(ErrorKind::InvalidInput)
            }
            Self::UnknownDefinition { .. } | Self::NotFound(_) => {
                ErrorClass::of(ErrorKind::NotFound)
            }
            Self::InvalidState { .. } => ErrorClass::of(ErrorKind::Conflict),
            Self::Corrupt { .. } => ErrorClass::of(ErrorKind::Internal),
            Self::Store(e) => e.class(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
