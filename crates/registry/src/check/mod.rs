//! Health checks: what a check is ([`CheckSpec`]), how results move an instance's status
//! ([`Counters::apply`]), how probes run ([`probe`]) and how they are scheduled ([`runner`]).

pub(crate) mod probe;
pub(crate) mod runner;
mod tasks;

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_discovery::HealthStatus;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How the registry probes an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CheckKind {
    /// An HTTP request: 2xx is passing, 429 warning, anything else (or no answer) critical —
    /// unless `expected_status` is set, then only that status passes.
    Http {
        /// Path on the instance's base URL. Default `/health`.
        #[serde(default = "default_path")]
        path: String,
        /// A full `http://` URL to probe instead of the instance's base URL and `path`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Request method. Default `GET`.
        #[serde(default = "default_method")]
        method: String,
        /// Extra request headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// The only status that counts as passing, when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_status: Option<u16>,
    },
    /// A TCP connect to the instance (or to `address`, `host:port`).
    Tcp {
        /// Where to connect instead of the instance's address and port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// The instance reports itself: a missed heartbeat for `ttl` turns it critical.
    Ttl {
        /// How long a heartbeat is good for.
        #[serde(with = "humantime_serde")]
        ttl: Duration,
    },
}

fn default_path() -> String {
    "/health".into()
}

fn default_method() -> String {
    "GET".into()
}

/// A health check with its timing and thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// What to probe.
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Time between probes (HTTP, TCP). Default 10 s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of each probe. Default 5 s, never more than `interval`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passing results before a non-passing instance turns passing. Default 1.
    #[serde(default = "one")]
    pub successes_before_passing: u32,
    /// Consecutive failing results before a passing instance turns critical. Default 1.
    #[serde(default = "one")]
    pub failures_before_critical: u32,
    /// Remove the instance once it has been critical this long. Default: never.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub deregister_after: Option<Duration>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn one() -> u32 {
    1
}

impl CheckSpec {
    /// A check of `kind` with default timing and thresholds.
    pub fn new(kind: CheckKind) -> Self {
        Self {
            kind,
            interval: default_interval(),
            timeout: default_timeout(),
            successes_before_passing: 1,
            failures_before_critical: 1,
            deregister_after: None,
        }
    }

    /// Checks ranges so a registration cannot make the registry probe in a tight loop.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Invalid(format!("invalid check: {m}")));
        let ms = |d: Duration| d.as_millis();
        if !(100..=3_600_000).contains(&ms(self.interval)) {
            return bad(format!("interval {:?} must be 100ms to 1h", self.interval));
        }
        if ms(self.timeout) < 10 || self.timeout > self.interval {
            return bad(format!(
                "timeout {:?} must be 10ms to the interval",
                self.timeout
            ));
        }
        for (field, n) in [
            ("successes_before_passing", self.successes_before_passing),
            ("failures_before_critical", self.failures_before_critical),
        ] {
            if !(1..=100).contains(&n) {
                return bad(format!("{field} = {n} must be 1 to 100"));
            }
        }
        if self
            .deregister_after
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return bad("deregister_after must be at least 1s".into());
        }
        self.validate_kind()
    }

    fn validate_kind(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Invalid(format!("invalid check: {m}")));
        match &self.kind {
            CheckKind::Http {
                path,
                url,
                method,
                headers,
                expected_status,
            } => {
                if !path.starts_with('/') || path.len() > 1024 {
                    return bad(format!(
                        "path {path:?} must start with '/' (max 1024 bytes)"
                    ));
                }
                if let Some(u) = url {
                    probe::parse_http_url(u)
                        .map_err(|e| Error::Invalid(format!("invalid check: {e}")))?;
                }
                if http::Method::from_bytes(method.as_bytes()).is_err() {
                    return bad(format!("method {method:?} is not an HTTP method"));
                }
                if headers.len() > 32 {
                    return bad("more than 32 headers".into());
                }
                for (k, v) in headers {
                    if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || http::HeaderValue::from_str(v).is_err()
                    {
                        return bad(format!("header {k:?} is not a valid HTTP header"));
                    }
                }
                if expected_status.is_some_and(|s| !(100..=599).contains(&s)) {
                    return bad("expected_status must be 100 to 599".into());
                }
                Ok(())
            }
            CheckKind::Tcp { address } => match address {
                Some(a) if a.len() > 300 || !a.contains(':') => {
                    bad(format!("tcp address {a:?} must be host:port"))
                }
                _ => Ok(()),
            },
            CheckKind::Ttl { ttl }
                if *ttl < Duration::from_secs(1) || *ttl > Duration::from_secs(86_400) =>
            {
                bad(format!("ttl {ttl:?} must be 1s to 24h"))
            }
            CheckKind::Ttl { .. } => Ok(()),
        }
    }

    /// The kind as a metric label.
    pub(crate) fn kind_label(&self) -> &'static str {
        match self.kind {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl { .. } => "ttl",
        }
    }
}

/// One probe's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passing, warning or critical.
    pub status: HealthStatus,
    /// What the probe saw, for operators.
    pub output: String,
}

/// Consecutive results, so thresholds can be applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    successes: u32,
    failures: u32,
}

impl Counters {
    /// Records `result` and returns the status the instance should have now, given its
    /// `current` status. Draining is sticky: checks never move an instance out of it.
    pub fn apply(
        &mut self,
        spec: &CheckSpec,
        current: HealthStatus,
        result: HealthStatus,
    ) -> HealthStatus {
        if current == HealthStatus::Draining {
            return current;
        }
        if result == HealthStatus::Critical {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if current == HealthStatus::Critical || self.failures >= spec.failures_before_critical {
                return HealthStatus::Critical;
            }
            return current;
        }
        self.failures = 0;
        self.successes = self.successes.saturating_add(1);
        if current != HealthStatus::Critical || self.successes >= spec.successes_before_passing {
            return result;
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Critical, Draining, Passing, Warning};

    fn spec(successes: u32, failures: u32) -> CheckSpec {
        CheckSpec {
            successes_before_passing: successes,
            failures_before_critical: failures,
            ..CheckSpec::new(CheckKind::Tcp { address: None })
        }
    }

    #[test]
    fn passing_turns_critical_after_exactly_the_configured_failures() {
        let s = spec(1, 3);
        let mut c = Counters::default();
        assert_eq!(c.apply(&s, Passing, Critical), Passing);
        assert_eq!(c.apply(&s, Passing, Critical), Passing);
        assert_eq!(c.apply(&s, Passing, Critical), Critical);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let s = spec(1, 2);
        let mut c = Counters::default();
        assert_eq!(c.apply(&s, Passing, Critical), Passing);
        assert_eq!(c.apply(&s, Passing, Passing), Passing);
        assert_eq!(c.apply(&s, Passing, Critical), Passing);
    }

    #[test]
    fn critical_turns_passing_after_the_configured_successes() {
        let s = spec(2, 1);
        let mut c = Counters::default();
        assert_eq!(c.apply(&s, Critical, Passing), Critical);
        assert_eq!(c.apply(&s, Critical, Passing), Passing);
        assert_eq!(c.apply(&s, Passing, Warning), Warning);
    }

    #[test]
    fn draining_is_never_left_by_a_check() {
        let mut c = Counters::default();
        assert_eq!(c.apply(&spec(1, 1), Draining, Passing), Draining);
        assert_eq!(c.apply(&spec(1, 1), Draining, Critical), Draining);
    }

    #[test]
    fn checks_deserialize_with_defaults_and_validate_ranges() {
        let c: CheckSpec = serde_json::from_str(r#"{"type":"http","interval":"1s"}"#).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.validate().is_err(), "timeout above interval");
        let c: CheckSpec =
            serde_json::from_str(r#"{"type":"ttl","ttl":"15s","deregister_after":"30s"}"#).unwrap();
        assert!(c.validate().is_ok());
        let c: CheckSpec = serde_json::from_str(r#"{"type":"http","interval":"1ms"}"#).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("interval"));
        let c: CheckSpec = serde_json::from_str(r#"{"type":"http","method":"G ET"}"#).unwrap();
        assert!(c.validate().is_err());
    }
}
