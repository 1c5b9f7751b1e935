//! Flotilla on PostgreSQL (layer L2).
//!
//! This crate owns the connection pool ([`Options`], [`connect`]) and the contract
//! implementations that run on PostgreSQL: the event store ([`eventstore`], feature
//! `eventstore`), the bus's transactional outbox and inbox ([`outbox`], feature `outbox`), and
//! the registry catalog that several registry replicas share ([`catalog`], feature `catalog`).
//! Every table lives in one schema named by the options, so several Flotilla installations
//! (or test runs) can share a database.
//!
//! It does not own the contracts (those are the L1 crates) or any HTTP surface. Only the
//! binary (`flotilla-cli`), the SDK's features and tests depend on it.

#[cfg(feature = "catalog")]
pub mod catalog;
#[cfg(feature = "eventstore")]
pub mod eventstore;
#[cfg(feature = "outbox")]
pub mod outbox;

use flotilla_core::error::Classify;
use flotilla_core::redact;
use flotilla_core::{ErrorClass, ErrorKind};
use serde::{Deserialize, Serialize};

/// Why connecting or configuring failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option was refused; the message names it and the bad value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The pool could not be built from the URL.
    #[error("cannot build a connection pool for {url}: {message}")]
    Pool {
        /// The URL, without its password.
        url: String,
        /// Why.
        message: String,
    },
    /// PostgreSQL or the connection to it failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("no database connection: {0}")]
    Unavailable(String),
}

impl Classify for Error {
    fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidOption(_) => ErrorClass::of(ErrorKind::InvalidInput),
            Self::Pool { .. } => ErrorClass::of(ErrorKind::InvalidInput),
            Self::Postgres(_) | Self::Unavailable(_) => ErrorClass::of(ErrorKind::Unavailable),
        }
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.class().kind
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Connection URL (`postgres://user@host:5432/db`). Default `postgres://localhost/flotilla`.
    pub url: String,
    /// Schema holding Flotilla's tables (created if missing). Default `flotilla`.
    pub schema: String,
    /// Most pooled connections. Default 16.
    pub pool_size: usize,
    /// How often subscribers look for appends made by other processes, in milliseconds.
    /// Appends through this process are announced at once. Default 100.
    pub poll_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            url: "postgres://localhost/flotilla".into(),
            schema: "flotilla".into(),
            pool_size: 16,
            poll_interval_ms: 100,
        }
    }
}

impl Options {
    /// Options for `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Checks every option, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let s = &self.schema;
        let ident = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ident {
            return Err(Error::InvalidOption(format!(
                "schema {s:?} must be 1 to 63 lowercase letters, digits or '_', not starting \
                 with a digit"
            )));
        }
        if self.pool_size == 0 {
            return Err(Error::InvalidOption("pool_size must be at least 1".into()));
        }
        if self.poll_interval_ms == 0 {
            return Err(Error::InvalidOption(
                "poll_interval_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Builds a connection pool (connections open lazily, on first use).
pub fn connect(options: &Options) -> Result<deadpool_postgres::Pool, Error> {
    options.validate()?;
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(options.url.clone());
    cfg.pool = Some(deadpool_postgres::PoolConfig::new(options.pool_size));
    cfg.create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .map_err(|e| Error::Pool {
        url: redact::url(&options.url),
        message: redact::text_about(&e.to_string(), &options.url),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_refuse_bad_schema_names() {
        for bad in ["", "Flotilla", "1abc", "a-b", "a;drop"] {
            let o = Options {
                schema: bad.into(),
                ..Options::default()
            };
            let e = o.validate().unwrap_err();
            assert!(e.to_string().contains("schema"), "{bad}: {e}");
        }
        assert!(Options::default().validate().is_ok());
    }

    #[test]
    fn a_bad_url_error_names_the_url_without_its_password() {
        let o = Options::new("postgres://u:s3cret@h:notaport/db");
        let e = connect(&o).expect_err("the port is not a number");
        let msg = e.to_string();
        assert!(msg.contains("postgres://u:***@h"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
