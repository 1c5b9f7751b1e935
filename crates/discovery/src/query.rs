//! Instance filters shared by discovery callers, the registry's HTTP API and gateway routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Endpoint, HealthStatus};

/// How a tag list must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagMatch {
    /// Every listed tag must be present.
    #[default]
    All,
    /// At least one listed tag must be present.
    Any,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid discovery query `{field}`: {reason}")]
pub struct QueryError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A filter over a service's endpoints. The default query selects routable instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Query {
    /// Only these statuses; empty means "routable" (passing or warning).
    pub status: Vec<HealthStatus>,
    /// A semver requirement (`^1.2`, `>=2, <3`) the instance's version must satisfy; instances
    /// whose version is not semver never match a requirement.
    pub version: Option<String>,
    /// Tags to match.
    pub tags: Vec<String>,
    /// How `tags` must match.
    pub tag_match: TagMatch,
    /// Metadata entries that must be present with exactly these values.
    pub metadata: BTreeMap<String, String>,
    #[serde(skip)]
    parsed_version: Option<semver::VersionReq>,
}

impl Query {
    /// Checks the query and prepares it for matching.
    pub fn validated(mut self) -> Result<Self, QueryError> {
        self.parsed_version = match &self.version {
            None => None,
            Some(v) => Some(semver::VersionReq::parse(v).map_err(|e| QueryError {
                field: "version",
                reason: format!("{v:?} is not a semver requirement ({e})"),
            })?),
        };
        Ok(self)
    }

    /// Whether `endpoint` passes every filter.
    pub fn matches(&self, endpoint: &Endpoint) -> bool {
        let status_ok = if self.status.is_empty() {
            endpoint.status.is_routable()
        } else {
            self.status.contains(&endpoint.status)
        };
        status_ok
            && self.version_ok(endpoint)
            && self.tags_ok(endpoint)
            && self.metadata_ok(endpoint)
    }

    fn version_ok(&self, e: &Endpoint) -> bool {
        let req = match (&self.parsed_version, &self.version) {
            (Some(req), _) => req.clone(),
            (None, None) => return true,
            // Not validated: parse on the fly, refusing to match on a bad requirement.
            (None, Some(v)) => match semver::VersionReq::parse(v) {
                Ok(req) => req,
                Err(_) => return false,
            },
        };
        semver::Version::parse(&e.instance.version).is_ok_and(|v| req.matches(&v))
    }

    fn tags_ok(&self, e: &Endpoint) -> bool {
        if self.tags.is_empty() {
            return true;
        }
        let has = |t: &String| e.instance.tags.contains(t);
        match self.tag_match {
            TagMatch::All => self.tags.iter().all(has),
            TagMatch::Any => self.tags.iter().any(has),
        }
    }

    fn metadata_ok(&self, e: &Endpoint) -> bool {
        self.metadata
            .iter()
            .all(|(k, v)| e.instance.metadata.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::{ServiceInstance, ServiceName};

    fn ep(version: &str, tags: &[&str], status: HealthStatus) -> Endpoint {
        let mut instance = ServiceInstance::new(ServiceName::new("users").unwrap(), "h", 1);
        instance.version = version.into();
        instance.tags = tags.iter().map(|t| t.to_string()).collect();
        instance.metadata.insert("zone".into(), "eu-1".into());
        Endpoint { instance, status }
    }

    #[test]
    fn default_query_selects_routable_only() {
        let q = Query::default();
        assert!(q.matches(&ep("1.0.0", &[], HealthStatus::Passing)));
        assert!(q.matches(&ep("1.0.0", &[], HealthStatus::Warning)));
        assert!(!q.matches(&ep("1.0.0", &[], HealthStatus::Critical)));
        assert!(!q.matches(&ep("1.0.0", &[], HealthStatus::Draining)));
    }

    #[test]
    fn version_ranges_tags_and_metadata_filter() {
        let q = Query {
            version: Some("^1.2".into()),
            tags: vec!["canary".into()],
            ..Query::default()
        }
        .validated()
        .unwrap();
        assert!(q.matches(&ep("1.4.0", &["canary", "x"], HealthStatus::Passing)));
        assert!(!q.matches(&ep("2.0.0", &["canary"], HealthStatus::Passing)));
        assert!(!q.matches(&ep("1.4.0", &["x"], HealthStatus::Passing)));
        assert!(!q.matches(&ep("not-semver", &["canary"], HealthStatus::Passing)));
        let any = Query {
            tags: vec!["a".into(), "b".into()],
            tag_match: TagMatch::Any,
            ..Query::default()
        };
        assert!(any.matches(&ep("", &["b"], HealthStatus::Passing)));
        let mut md = Query::default();
        md.metadata.insert("zone".into(), "us-1".into());
        assert!(!md.matches(&ep("", &[], HealthStatus::Passing)));
    }

    #[test]
    fn bad_version_requirement_names_the_field() {
        let e = Query {
            version: Some("one".into()),
            ..Query::default()
        }
        .validated()
        .unwrap_err();
        assert_eq!(e.field, "version");
    }
}
