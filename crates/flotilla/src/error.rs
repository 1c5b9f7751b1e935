//! The SDK's error type.

use flotilla_core::error::{Classify, ErrorClass, ErrorKind};

use crate::config::ConfigError;

/// Why building or running a service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A name (service name) is invalid.
    #[error(transparent)]
    Name(#[from] flotilla_core::NameError),
    /// Binding or serving the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed after start.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    /// A start-up hook failed.
    #[error("start-up hook `{name}` failed: {message}")]
    Hook {
        /// The hook's name.
        name: String,
        /// What it reported.
        message: String,
    },
    /// An event subscription could not start (an invalid pattern or group, an unreachable
    /// bus): the service does not start.
    #[error("event subscription {subscription} could not start: {message}")]
    Subscription {
        /// The subscription: its pattern and group when known.
        subscription: String,
        /// What the bus reported.
        message: String,
    },
    /// The builder was given parts that do not fit together (event handlers without a bus,
    /// two projections of one name).
    #[error("invalid service setup: {0}")]
    Setup(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Config(_) | Self::Name(_) | Self::Setup(_) => {
                ErrorClass::of(ErrorKind::InvalidInput)
            }
            Self::Listen { .. }
            | Self::Serve(_)
            | Self::Hook { .. }
            | Self::Subscription { .. } => ErrorClass::of(ErrorKind::Internal),
        }
    }
}
