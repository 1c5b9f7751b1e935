//! Declarative policies: named sets of timeouts, retries, breakers, bulkheads, rate limits and
//! balancing, with defaults and per-target overrides, in TOML. The gateway and the SDK's client
//! read the same format.
//!
//! Precedence, lowest first, field by field: built-in defaults, then `[defaults]`, then the
//! named policy a target chooses (`[policies.<name>]`, through `targets.<target>.policy`),
//! then the target's own keys (`[targets.<target>]`). A target that is not listed gets
//! `[defaults]`. See `docs/resilience.md` for every key and its default.
//!
//! ```toml
//! [defaults]
//! timeout = "5s"
//! retry = { max_attempts = 3 }
//!
//! [policies.critical]
//! timeout = "1s"
//! breaker = { consecutive_failures = 3, open_duration = "10s" }
//!
//! [targets.users]
//! policy = "critical"
//! retry = { max_attempts = 2 }
//! ```

mod resolve;
mod spec;
mod stack;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use resolve::{DEFAULT_TIMEOUT, RateKey, RateLimitConfig, ResolvedPolicy};
pub use spec::{BalanceSpec, BreakerSpec, BulkheadSpec, Dur, PolicySpec, RateLimitSpec, RetrySpec};
pub use stack::Resilience;

use crate::Error;

/// The policy file as written (or a `[resilience]` section of a larger file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Applies to every target.
    #[serde(default)]
    pub defaults: PolicySpec,
    /// Named policies that targets choose by name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySpec>,
    /// Per-target (service or route) overrides.
    #[serde(default)]
    pub targets: BTreeMap<String, PolicySpec>,
}

/// A validated policy file, ready to resolve targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    file: PolicyFile,
}

impl PolicySet {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| Error::invalid("policy file", e.to_string().trim_end().to_owned()))?;
        Self::new(file)
    }

    /// Validates a policy file; the error names the first bad key.
    pub fn new(file: PolicyFile) -> Result<Self, Error> {
        validate::policy("defaults", &file.defaults, false)?;
        for (name, spec) in &file.policies {
            validate::policy(&format!("policies.{name}"), spec, false)?;
        }
        for (name, spec) in &file.targets {
            let at = format!("targets.{name}");
            validate::policy(&at, spec, true)?;
            if let Some(p) = &spec.policy
                && !file.policies.contains_key(p)
            {
                return Err(Error::invalid(
                    format!("{at}.policy"),
                    format!("no policy named {p:?}"),
                ));
            }
        }
        // Merged levels can break cross-field rules no single level breaks.
        for name in file.targets.keys() {
            Self::check_merged(&format!("targets.{name}"), &merged(&file, name))?;
        }
        Self::check_merged("defaults", &file.defaults)?;
        Ok(Self { file })
    }

    fn check_merged(at: &str, spec: &PolicySpec) -> Result<(), Error> {
        let resolved = ResolvedPolicy::from_spec(spec);
        let b = &resolved.retry.backoff;
        if b.base > b.cap {
            return Err(Error::invalid(
                format!("{at}.retry.base_delay"),
                "must not exceed max_delay once merged",
            ));
        }
        Ok(())
    }

    /// The settings for `target` (a service name or route name).
    pub fn resolve(&self, target: &str) -> ResolvedPolicy {
        ResolvedPolicy::from_spec(&merged(&self.file, target))
    }

    /// The settings of named `policy` (or `[defaults]` alone) with `overrides` on top, for
    /// callers that keep their own per-target table (gateway routes).
    pub fn resolve_with(
        &self,
        policy: Option<&str>,
        overrides: Option<&PolicySpec>,
    ) -> Result<ResolvedPolicy, Error> {
        let mut spec = self.file.defaults.clone();
        if let Some(name) = policy {
            let named = self
                .file
                .policies
                .get(name)
                .ok_or_else(|| Error::invalid("policy", format!("no policy named {name:?}")))?;
            spec = spec.merge(named.clone());
        }
        if let Some(o) = overrides {
            validate::policy("overrides", o, true)?;
            spec = spec.merge(o.clone());
        }
        Ok(ResolvedPolicy::from_spec(&spec))
    }

    /// The file as written.
    pub fn file(&self) -> &PolicyFile {
        &self.file
    }
}

fn merged(file: &PolicyFile, target: &str) -> PolicySpec {
    let mut spec = file.defaults.clone();
    if let Some(t) = file.targets.get(target) {
        if let Some(named) = t.policy.as_ref().and_then(|p| file.policies.get(p)) {
            spec = spec.merge(named.clone());
        }
        spec = spec.merge(t.clone());
    }
    spec
}

#[cfg(test)]
mod tests;
