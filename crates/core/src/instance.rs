//! The service-instance model: one running copy of a service, as the registry stores it and as
//! discovery returns it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{NameError, ServiceName};

/// Most tags one instance may carry.
pub const MAX_TAGS: usize = 64;
/// Most metadata entries one instance may carry.
pub const MAX_METADATA: usize = 64;
/// Longest tag, metadata key or metadata value, in bytes.
pub const MAX_LABEL_LEN: usize = 512;

/// How to talk to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
        })
    }
}

/// Why an instance description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// The service name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A field broke a rule; `field` names it.
    #[error("invalid instance field `{field}`: {reason}")]
    Field {
        /// The field's name, as in JSON (`tags[3]`, `metadata.zone`).
        field: String,
        /// The rule it broke.
        reason: String,
    },
}

/// One running copy of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// Unique within the service; defaults to `name-address-port` when registering.
    pub id: String,
    /// The service it belongs to.
    pub name: ServiceName,
    /// Host name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// The version it runs (semver recommended, any string accepted).
    #[serde(default)]
    pub version: String,
    /// Free-form labels (`primary`, `canary`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Key/value labels (`zone = eu-1`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Relative share of traffic for weighted balancing; 0 takes none.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl ServiceInstance {
    /// A new instance with default scheme, no version, tags or metadata, and weight 1.
    pub fn new(name: ServiceName, address: impl Into<String>, port: u16) -> Self {
        let address = address.into();
        Self {
            id: format!("{name}-{address}-{port}"),
            name,
            address,
            port,
            scheme: Scheme::Http,
            version: String::new(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            weight: 1,
        }
    }

    /// The base URL, `scheme://address:port`, with IPv6 addresses bracketed.
    pub fn base_url(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("{}://[{}]:{}", self.scheme, self.address, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.address, self.port)
        }
    }

    /// Checks sizes and character sets so hostile registrations cannot bloat the catalog.
    pub fn validate(&self) -> Result<(), InstanceError> {
        let field = |field: &str, reason: &str| {
            Err(InstanceError::Field {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if self.id.is_empty() || self.id.len() > 128 {
            return field("id", "must be 1 to 128 characters long");
        }
        if self
            .id
            .chars()
            .any(|c| c.is_control() || c == '/' || c.is_whitespace())
        {
            return field(
                "id",
                "must not contain whitespace, control characters or '/'",
            );
        }
        if self.address.is_empty() || self.address.len() > 253 {
            return field("address", "must be 1 to 253 characters long");
        }
        if self
            .address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return field("address", "must be a host name or IP address");
        }
        if self.port == 0 {
            return field("port", "must be 1 to 65535");
        }
        if self.version.len() > MAX_LABEL_LEN {
            return field("version", "is too long");
        }
        self.validate_labels()
    }

    fn validate_labels(&self) -> Result<(), InstanceError> {
        let bad = |field: String, reason: &str| {
            Err(InstanceError::Field {
                field,
                reason: reason.into(),
            })
        };
        if self.tags.len() > MAX_TAGS {
            return bad("tags".into(), "has more than 64 entries");
        }
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.is_empty() || tag.len() > MAX_LABEL_LEN || tag.chars().any(char::is_control) {
                return bad(
                    format!("tags[{i}]"),
                    "must be 1 to 512 printable characters",
                );
            }
        }
        if self.metadata.len() > MAX_METADATA {
            return bad("metadata".into(), "has more than 64 entries");
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_graphic()) {
                return bad(
                    format!("metadata.{k}"),
                    "keys must be 1 to 128 visible ASCII characters",
                );
            }
            if v.len() > MAX_LABEL_LEN {
                return bad(format!("metadata.{k}"), "values must be at most 512 bytes");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> ServiceInstance {
        ServiceInstance::new(ServiceName::new("users").unwrap(), "127.0.0.1", 8080)
    }

    #[test]
    fn base_url_brackets_ipv6() {
        assert_eq!(inst().base_url(), "http://127.0.0.1:8080");
        let mut i = inst();
        i.address = "::1".into();
        assert_eq!(i.base_url(), "http://[::1]:8080");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut i = inst();
        i.tags = vec!["ok".into(), String::new()];
        match i.validate().unwrap_err() {
            InstanceError::Field { field, .. } => assert_eq!(field, "tags[1]"),
            e => panic!("unexpected {e}"),
        }
        let mut i = inst();
        i.port = 0;
        assert!(i.validate().is_err());
        assert!(inst().validate().is_ok());
    }

    #[test]
    fn defaults_apply_when_deserializing() {
        let i: ServiceInstance =
            serde_json::from_str(r#"{"id":"u1","name":"users","address":"h","port":1}"#).unwrap();
        assert_eq!((i.weight, i.scheme), (1, Scheme::Http));
    }
}
