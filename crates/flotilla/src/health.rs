//! Liveness (`/health`) and readiness (`/ready`) with pluggable checks.
//!
//! Liveness answers "should this process be restarted?": it fails only when a liveness check
//! is critical. Readiness answers "should traffic be sent here?": it fails until start-up
//! completes, while draining, and when a readiness check (a dependency) is critical. Each check
//! runs with its own timeout so one hung dependency cannot hang the probe.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json as AxumJson;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::lifecycle::{Lifecycle, State};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// All good.
    Passing,
    /// Degraded but serving.
    Warning,
    /// Failing.
    Critical,
}

/// A check's result with free-form details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The verdict.
    pub status: CheckStatus,
    /// Anything useful to an operator (latency, counts, last error).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl CheckResult {
    /// A passing result without details.
    pub fn passing() -> Self {
        Self {
            status: CheckStatus::Passing,
            details: Value::Null,
        }
    }

    /// A warning with details.
    pub fn warning(details: impl Into<Value>) -> Self {
        Self {
            status: CheckStatus::Warning,
            details: details.into(),
        }
    }

    /// A critical result with details.
    pub fn critical(details: impl Into<Value>) -> Self {
        Self {
            status: CheckStatus::Critical,
            details: details.into(),
        }
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// A named health check. Build one from any async closure with [`HealthCheck::new`].
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    timeout: Duration,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl HealthCheck {
    /// A check named `name` that runs `f`, timing out (critical) after 2 seconds.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        let run = Arc::new(move || Box::pin(f()) as CheckFuture);
        Self {
            name: name.into(),
            timeout: Duration::from_secs(2),
            run,
        }
    }

    /// Changes the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn execute(&self) -> CheckResult {
        match tokio::time::timeout(self.timeout, (self.run)()).await {
            Ok(r) => r,
            Err(_) => CheckResult::critical(serde_json::json!({
                "error": format!("check timed out after {:?}", self.timeout)
            })),
        }
    }
}

/// What the probes report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    service: &'a str,
    version: &'a str,
    status: CheckStatus,
    state: State,
    uptime_seconds: f64,
    checks: BTreeMap<String, CheckResult>,
}

/// The checks and identity the probe handlers need.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    pub(crate) name: Arc<str>,
    pub(crate) version: Arc<str>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) liveness: Arc<[HealthCheck]>,
    pub(crate) readiness: Arc<[HealthCheck]>,
}

impl Probes {
    async fn run_all(checks: &[HealthCheck]) -> BTreeMap<String, CheckResult> {
        let results = futures_util::future::join_all(checks.iter().map(HealthCheck::execute)).await;
        checks.iter().map(|c| c.name.clone()).zip(results).collect()
    }

    fn report(&self, checks: BTreeMap<String, CheckResult>, status: CheckStatus) -> Report<'_> {
        Report {
            service: &self.name,
            version: &self.version,
            status,
            state: self.lifecycle.state(),
            uptime_seconds: self.lifecycle.uptime_seconds(),
            checks,
        }
    }

    /// `GET /health`: 200 unless a liveness check is critical.
    pub(crate) async fn health(&self) -> Response {
        let checks = Self::run_all(&self.liveness).await;
        let status = worst(&checks);
        let code = if status == CheckStatus::Critical {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (code, AxumJson(self.report(checks, status))).into_response()
    }

    /// `GET /ready`: 200 only while running and no readiness check is critical.
    pub(crate) async fn ready(&self) -> Response {
        let checks = Self::run_all(&self.readiness).await;
        let running = self.lifecycle.state() == State::Running;
        let status = if running {
            worst(&checks)
        } else {
            CheckStatus::Critical
        };
        let code = if status == CheckStatus::Critical {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (code, AxumJson(self.report(checks, status))).into_response()
    }
}

fn worst(checks: &BTreeMap<String, CheckResult>) -> CheckStatus {
    checks
        .values()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_times_out_as_critical() {
        let hung = HealthCheck::new("db", || async {
            std::future::pending::<()>().await;
            CheckResult::passing()
        });
        let r = hung.execute().await;
        assert_eq!(r.status, CheckStatus::Critical);
    }

    #[test]
    fn the_worst_check_decides() {
        let mut m = BTreeMap::new();
        assert_eq!(worst(&m), CheckStatus::Passing);
        m.insert("a".into(), CheckResult::warning("slow"));
        assert_eq!(worst(&m), CheckStatus::Warning);
        m.insert("b".into(), CheckResult::critical("down"));
        assert_eq!(worst(&m), CheckStatus::Critical);
    }
}
