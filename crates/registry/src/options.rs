//! The registry's configuration (`[registry]` in `flotilla.toml`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Registry options. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Bearer token required on every write (register, deregister, heartbeat, drain, Consul
    /// agent endpoints). Default: none; required when the control plane listens beyond
    /// loopback (see [`Options::check_exposure`]).
    pub token: Option<String>,
    /// Largest accepted request body, in bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Most health checks running at once; the rest wait their turn. Default 256.
    pub max_concurrent_checks: usize,
    /// Longest `wait` a blocking query may ask for. Default 10 minutes (as Consul).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// `wait` of a blocking query that gives none. Default 5 minutes (as Consul).
    #[serde(with = "humantime_serde")]
    pub default_wait: Duration,
    /// Datacenter name reported on the Consul-compatible endpoints. Default `dc1`.
    pub datacenter: String,
    /// Node name reported on the Consul-compatible endpoints. Default `flotilla`.
    pub node_name: String,
    /// Where the catalog is stored (`[registry.catalog]`). The registry only carries this
    /// setting; the binary opens the store it names.
    pub catalog: CatalogOptions,
    /// With a catalog shared by several replicas: how long a replica that stops renewing its
    /// lease keeps its share of the health checks before the others take them over. Renewed
    /// every third of it. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub replica_lease: Duration,
    /// With a shared catalog: how often a replica reads the others' changes even when no
    /// notification arrived (a lost notification delays a change by at most this). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub catch_up_interval: Duration,
}

/// Which engine stores the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The embedded SQLite database in `storage.data_dir` (the default): one registry.
    #[default]
    Sqlite,
    /// In memory: lost on exit; for trials and tests.
    Memory,
    /// PostgreSQL at `url`, shareable by several registry replicas (build feature `postgres`).
    Postgres,
}

/// `[registry.catalog]`: the catalog's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogOptions {
    /// The engine. Default `sqlite`.
    pub kind: CatalogKind,
    /// PostgreSQL URL, required for `postgres`.
    pub url: Option<String>,
    /// PostgreSQL schema of the catalog's tables. Default `flotilla`.
    pub schema: String,
    /// Most pooled PostgreSQL connections. Default 8.
    pub pool_size: usize,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            kind: CatalogKind::Sqlite,
            url: None,
            schema: "flotilla".into(),
            pool_size: 8,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token: None,
            max_body_bytes: 64 * 1024,
            max_concurrent_checks: 256,
            max_wait: Duration::from_secs(600),
            default_wait: Duration::from_secs(300),
            datacenter: "dc1".into(),
            node_name: "flotilla".into(),
            catalog: CatalogOptions::default(),
            replica_lease: Duration::from_secs(15),
            catch_up_interval: Duration::from_secs(1),
        }
    }
}

impl Options {
    /// Checks the options on their own.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_body_bytes < 1024 {
            return Err(Error::Invalid(format!(
                "registry.max_body_bytes = {} is below the minimum of 1024",
                self.max_body_bytes
            )));
        }
        if self.max_concurrent_checks == 0 {
            return Err(Error::Invalid(
                "registry.max_concurrent_checks must be at least 1".into(),
            ));
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Invalid("registry.token must not be empty".into()));
        }
        if self.default_wait > self.max_wait {
            return Err(Error::Invalid(
                "registry.default_wait must not exceed registry.max_wait".into(),
            ));
        }
        self.validate_replication()
    }

    fn validate_replication(&self) -> Result<(), Error> {
        let c = &self.catalog;
        if c.kind == CatalogKind::Postgres && c.url.as_deref().is_none_or(str::is_empty) {
            return Err(Error::Invalid(
                "registry.catalog.url is required when registry.catalog.kind = \"postgres\"".into(),
            ));
        }
        if c.pool_size == 0 {
            return Err(Error::Invalid(
                "registry.catalog.pool_size must be at least 1".into(),
            ));
        }
        if self.replica_lease < Duration::from_secs(1) {
            return Err(Error::Invalid(format!(
                "registry.replica_lease = {:?} is below the minimum of 1s",
                self.replica_lease
            )));
        }
        if self.catch_up_interval < Duration::from_millis(10) {
            return Err(Error::Invalid(format!(
                "registry.catch_up_interval = {:?} is below the minimum of 10ms",
                self.catch_up_interval
            )));
        }
        Ok(())
    }

    /// Refuses to serve writes without a token when the listener is reachable from other
    /// hosts. The CLI calls this with the control plane's listen address before starting.
    pub fn check_exposure(&self, listen: SocketAddr) -> Result<(), Error> {
        if self.token.is_none() && !listen.ip().is_loopback() {
            return Err(Error::Invalid(format!(
                "the registry listens on {listen}, beyond loopback: set registry.token so \
                 writes need a bearer token"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_required_beyond_loopback() {
        let open = Options::default();
        assert!(
            open.check_exposure("127.0.0.1:4400".parse().unwrap())
                .is_ok()
        );
        assert!(open.check_exposure("[::1]:4400".parse().unwrap()).is_ok());
        let err = open
            .check_exposure("0.0.0.0:4400".parse().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:4400"), "{err}");
        let with_token = Options {
            token: Some("s3cret".into()),
            ..Options::default()
        };
        assert!(
            with_token
                .check_exposure("0.0.0.0:4400".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn options_deserialize_with_defaults_and_refuse_unknown_fields() {
        let o: Options = serde_json::from_str(r#"{"max_wait":"30s"}"#).unwrap();
        assert_eq!(o.max_wait, Duration::from_secs(30));
        assert_eq!(o.max_body_bytes, 64 * 1024);
        assert!(serde_json::from_str::<Options>(r#"{"tokn":"x"}"#).is_err());
        assert!(
            o.validate().is_err(),
            "default_wait 5m exceeds max_wait 30s"
        );
    }

    #[test]
    fn a_postgres_catalog_needs_a_url() {
        let o: Options =
            serde_json::from_str(r#"{"catalog":{"kind":"postgres","schema":"reg"}}"#).unwrap();
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("registry.catalog.url"), "{e}");
        let o: Options = serde_json::from_str(
            r#"{"catalog":{"kind":"postgres","url":"postgres://h/db"},"replica_lease":"5s"}"#,
        )
        .unwrap();
        assert!(o.validate().is_ok());
        assert!(serde_json::from_str::<Options>(r#"{"catalog":{"kind":"mysql"}}"#).is_err());
    }
}
