//! Typed configuration: defaults, then a TOML file, then `FLOTILLA_` environment variables.
//!
//! Environment variables override the file; nested keys are joined with `__`
//! (`FLOTILLA_SERVICE__LISTEN=0.0.0.0:9000` sets `service.listen`). Every failure names the key
//! and where the bad value came from, so an operator can fix it without reading code.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FLOTILLA_";

/// A configuration problem. `Display` names the key and the source of the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}{}", source_hint(.origin))]
pub struct ConfigError {
    /// The dotted key (`service.listen`), or `(file)` when the file itself is at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from (a file path or an environment variable), when known.
    pub origin: Option<String>,
}

fn source_hint(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" (from {o})"))
        .unwrap_or_default()
}

impl ConfigError {
    /// A validation failure of `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            origin: None,
        }
    }

    fn from_figment(err: figment::Error, section: Option<&str>) -> Self {
        // A focused figment reports paths relative to the section: put the section back.
        let mut path: Vec<String> = section
            .map(|s| s.split('.').map(String::from).collect())
            .unwrap_or_default();
        path.extend(err.path.iter().cloned());
        let key = if path.is_empty() {
            "(root)".to_owned()
        } else {
            path.join(".")
        };
        let origin = err.metadata.as_ref().map(|m| match &m.source {
            Some(src) => src.to_string(),
            None => m.name.to_string(),
        });
        // Name the exact variable rather than figment's generic "environment variable(s)".
        let origin = origin.map(|o| match o.contains("environment") && !path.is_empty() {
            true => format!("{ENV_PREFIX}{}", path.join("__").to_uppercase()),
            false => o,
        });
        Self {
            key,
            message: err.kind.to_string(),
            origin,
        }
    }
}

/// Checks a loaded configuration beyond what its types enforce.
pub trait Validate {
    /// Returns the first invalid key, if any.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from defaults (`T::default()`), the optional TOML `file`, and `FLOTILLA_`
/// environment variables, looking only at the table `section` when given, then validates it.
pub fn load<T>(file: Option<&Path>, section: Option<&str>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.exists() {
            let msg = format!("file {} does not exist", path.display());
            return Err(ConfigError::invalid("(file)", msg));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["CONFIG"]));
    let figment = match section {
        Some(s) => Figment::from(Serialized::defaults(T::default())).merge(figment.focus(s)),
        None => Figment::from(Serialized::defaults(T::default())).merge(figment),
    };
    let value: T = figment
        .extract()
        .map_err(|e| ConfigError::from_figment(e, section))?;
    value.validate().map_err(|e| match section {
        Some(s) => ConfigError {
            key: format!("{s}.{}", e.key),
            ..e
        },
        None => e,
    })?;
    Ok(value)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The SDK's own settings, the `[service]` table of a service's config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes. Default 1 MiB.
    pub body_limit: usize,
    /// Longest accepted request target (path and query) in bytes; longer is answered 414.
    /// Default 8 KiB, as nginx. The HTTP parser itself refuses targets over 64 KiB with a
    /// bare 414, so this is the limit clients see with a problem body.
    pub max_uri_bytes: usize,
    /// Longest a request may take before it is answered 503. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After shutdown starts, how long readiness reports 503 before the listener closes, so
    /// load balancers stop sending traffic. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// How long in-flight requests get to finish once the listener closes. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// `human` or `json`. Default `human`.
    pub log_format: LogFormat,
    /// A `tracing` filter directive (`info`, `flotilla=debug,info`). Default `info`.
    pub log_level: String,
    /// Bearer token the `/admin` routes (projection rebuilds) require. Unset (the default):
    /// they answer loopback callers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: 1024 * 1024,
            max_uri_bytes: 8 * 1024,
            request_timeout: Duration::from_secs(30),
            drain_delay: Duration::from_secs(2),
            shutdown_deadline: Duration::from_secs(10),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            admin_token: None,
        }
    }
}

impl Validate for ServiceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit == 0 {
            return Err(ConfigError::invalid(
                "body_limit",
                "must be at least 1 byte",
            ));
        }
        if self.max_uri_bytes < 256 {
            return Err(ConfigError::invalid(
                "max_uri_bytes",
                "must be at least 256 bytes",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "request_timeout",
                "must be longer than 0s",
            ));
        }
        if self.shutdown_deadline.is_zero() {
            return Err(ConfigError::invalid(
                "shutdown_deadline",
                "must be longer than 0s",
            ));
        }
        if self.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                "admin_token",
                "must not be empty (leave it unset for loopback-only admin routes)",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            let msg = format!(
                "{:?} is not a log filter (try `info` or `debug`)",
                self.log_level
            );
            return Err(ConfigError::invalid("log_level", msg));
        }
        Ok(())
    }
}

impl ServiceConfig {
    /// Loads the `[service]` table from `file` (if any) and `FLOTILLA_SERVICE__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        load(file, Some("service"))
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("flotilla.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_apply_without_a_file() {
        figment::Jail::expect_with(|_| {
            assert_eq!(ServiceConfig::load(None).unwrap(), ServiceConfig::default());
            Ok(())
        });
    }

    #[test]
    fn a_bad_file_value_names_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[service]\nlisten = \"not an address\"\n");
        figment::Jail::expect_with(|_| {
            let err = ServiceConfig::load(Some(&path)).unwrap_err();
            assert_eq!(err.key, "service.listen");
            assert!(err.to_string().contains("flotilla.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file_and_bad_env_values_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[service]\nbody_limit = 10\n");
        figment::Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_SERVICE__BODY_LIMIT", "20");
            assert_eq!(ServiceConfig::load(Some(&path)).unwrap().body_limit, 20);
            jail.set_env("FLOTILLA_SERVICE__REQUEST_TIMEOUT", "soon");
            let err = ServiceConfig::load(Some(&path)).unwrap_err();
            assert_eq!(err.key, "service.request_timeout");
            assert!(
                err.to_string()
                    .contains("FLOTILLA_SERVICE__REQUEST_TIMEOUT"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn validation_failures_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[service]\nbody_limit = 0\n");
        figment::Jail::expect_with(|_| {
            let err = ServiceConfig::load(Some(&path)).unwrap_err();
            assert_eq!(err.key, "service.body_limit");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "[service]\nlisten_port = 1\n");
        figment::Jail::expect_with(|_| {
            let err = ServiceConfig::load(Some(&path)).unwrap_err();
            assert!(err.message.contains("listen_port"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = ServiceConfig::load(Some(Path::new("/nonexistent/flotilla.toml"))).unwrap_err();
        assert!(err.message.contains("does not exist"));
    }
}
