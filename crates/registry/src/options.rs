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
}
