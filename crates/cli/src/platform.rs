//! The platform's configuration file, `flotilla.toml`: one table per part.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flotilla::ServiceConfig;
use flotilla::config::{ConfigError, Validate, load};
use serde::{Deserialize, Serialize};

/// Where the embedded storage keeps its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// Directory of the embedded databases. Default `./flotilla-data`.
    pub(crate) data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("flotilla-data"),
        }
    }
}

/// The whole configuration of `flotilla up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PlatformConfig {
    /// The control plane's HTTP listener and the SDK settings it runs with (`[server]`).
    pub(crate) server: ServiceConfig,
    /// Embedded storage (`[storage]`).
    pub(crate) storage: StorageConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        let server = ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4400)),
            ..ServiceConfig::default()
        };
        Self {
            server,
            storage: StorageConfig::default(),
        }
    }
}

impl Validate for PlatformConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| ConfigError {
            key: format!("server.{}", e.key),
            ..e
        })?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

impl PlatformConfig {
    /// Defaults, then `file`, then `FLOTILLA_*` variables; validated.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        load(file, None)
    }
}
