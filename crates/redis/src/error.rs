//! The crate's one error type, classified for the edges.

use flotilla_core::error::Classify;
use flotilla_core::{ErrorClass, ErrorKind};

/// Why setting up the Redis bus failed. Bus operations answer `flotilla_bus::Error`; this
/// converts into it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {reason}")]
    Connect {
        /// The URL that was tried, its password masked.
        url: String,
        /// What the client reported, with the password masked.
        reason: String,
    },
    /// The configuration is invalid (names the option).
    #[error("invalid Redis bus option `{option}`: {reason}")]
    Config {
        /// The option at fault.
        option: &'static str,
        /// The rule it broke.
        reason: String,
    },
}

impl Error {
    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Connect { .. } => ErrorClass::of(ErrorKind::Unavailable),
            Self::Config { .. } => ErrorClass::of(ErrorKind::InvalidInput),
        }
    }
}

impl From<Error> for flotilla_bus::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Connect { .. } => Self::Unavailable(e.to_string()),
            Error::Config { .. } => Self::InvalidInput(e.to_string()),
        }
    }
}

/// Maps a Redis failure, including the error codes our scripts answer with, onto the bus's.
pub(crate) fn bus_error(e: redis::RedisError) -> flotilla_bus::Error {
    use flotilla_bus::Error as B;
    let detail = || e.detail().unwrap_or_default().to_owned();
    match e.code() {
        Some("LEASELOST") => B::LeaseLost,
        Some("CONFLICT") => B::Conflict(detail()),
        Some("NOGROUP") => B::NotFound {
            what: "group",
            id: detail(),
        },
        Some("NOTFOUND") => B::NotFound {
            what: "dead letter",
            id: detail(),
        },
        _ if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
            B::Unavailable(format!("Redis: {e}"))
        }
        _ => B::Backend(format!("Redis: {e}")),
    }
}
