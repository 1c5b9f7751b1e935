//! The crate's one error type, classified for the edges.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// Why a RabbitMQ bus set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect {
        /// The URL that was tried, its password masked.
        url: String,
        /// What the client reported, with the password masked.
        reason: String,
    },
    /// A broker operation failed (`op` names it: "declare queue", "publish", "ack", ...).
    #[error("RabbitMQ {op} failed: {reason}")]
    Broker {
        /// The operation that failed.
        op: &'static str,
        /// What the server or client reported.
        reason: String,
    },
    /// The caller passed something the backend cannot carry (names the value).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The configuration is invalid (names the option).
    #[error("invalid RabbitMQ bus option `{option}`: {reason}")]
    Config {
        /// The option at fault.
        option: &'static str,
        /// The rule it broke.
        reason: String,
    },
}

impl Error {
    pub(crate) fn broker(op: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Broker {
            op,
            reason: e.to_string(),
        }
    }

    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Connect { .. } => ErrorClass::of(ErrorKind::Unavailable),
            Self::Broker { .. } => ErrorClass::of(ErrorKind::Upstream),
            Self::InvalidInput(_) | Self::Config { .. } => ErrorClass::of(ErrorKind::InvalidInput),
        }
    }
}

impl From<Error> for flotilla_bus::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(m) => Self::InvalidInput(m),
            Error::Config { .. } => Self::InvalidInput(e.to_string()),
            Error::Connect { .. } | Error::Broker { .. } => Self::Unavailable(e.to_string()),
        }
    }
}
