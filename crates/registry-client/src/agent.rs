//! Self-registration: register on start (retrying with backoff while the registry is down, so
//! the service still starts), keep the registration alive (TTL heartbeats, or a periodic check
//! that the registry still knows the instance), re-register when it forgot it, and on shutdown
//! mark the instance draining, wait for callers to notice, then deregister.

use std::time::Duration;

use flotilla_core::ServiceInstance;
use flotilla_discovery::HealthStatus;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::follower::jittered;
use crate::{Error, RegistryClient};

/// The health check the registry should run for this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The registry probes `path` (usually `/health`) over HTTP every `interval`.
    Http {
        /// Path on the instance.
        path: String,
        /// Time between probes.
        interval: Duration,
        /// Remove the instance after it is critical this long.
        deregister_after: Option<Duration>,
    },
    /// The agent heartbeats every third of `ttl`; a missed TTL turns the instance critical.
    Ttl {
        /// How long a heartbeat is good for.
        ttl: Duration,
        /// Remove the instance after it is critical this long.
        deregister_after: Option<Duration>,
    },
}

impl Check {
    fn to_json(&self) -> Value {
        let ms = |d: &Duration| format!("{}ms", d.as_millis());
        let (mut v, after) = match self {
            Self::Http {
                path,
                interval,
                deregister_after,
            } => {
                let timeout = (*interval).min(Duration::from_secs(5));
                (
                    json!({"type": "http", "path": path, "interval": ms(interval), "timeout": ms(&timeout)}),
                    deregister_after,
                )
            }
            Self::Ttl {
                ttl,
                deregister_after,
            } => (json!({"type": "ttl", "ttl": ms(ttl)}), deregister_after),
        };
        if let Some(after) = after {
            v["deregister_after"] = json!(ms(after));
        }
        v
    }
}

/// What the agent registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The instance.
    pub instance: ServiceInstance,
    /// Its check.
    pub check: Check,
    /// How often to confirm the registry still knows an HTTP-checked instance. Default 10 s.
    pub verify_every: Duration,
    /// How long to stay registered as draining before deregistering at shutdown, so every
    /// cache sees the drain first. Default 2 s.
    pub drain_grace: Duration,
    /// Register as passing instead of critical-until-the-first-check (Consul's check
    /// `Status`). Set it when the instance registers only once its own readiness passes, so
    /// callers can reach it at once; the registry's first probe, which it runs at once, then
    /// corrects it if the instance is not healthy after all. TTL registrations always start
    /// passing: the agent's registration is its first heartbeat. Default false.
    pub starts_passing: bool,
}

impl Registration {
    /// `instance` with `check` and default timings.
    pub fn new(instance: ServiceInstance, check: Check) -> Self {
        Self {
            instance,
            check,
            verify_every: Duration::from_secs(10),
            drain_grace: Duration::from_secs(2),
            starts_passing: false,
        }
    }

    /// The status the registration asks to start in, when not the registry's default.
    fn status(&self) -> Option<HealthStatus> {
        (self.starts_passing || matches!(self.check, Check::Ttl { .. }))
            .then_some(HealthStatus::Passing)
    }

    fn body(&self) -> Result<Vec<u8>, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            instance: &'a ServiceInstance,
            check: Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<HealthStatus>,
        }
        serde_json::to_vec(&Body {
            instance: &self.instance,
            check: self.check.to_json(),
            status: self.status(),
        })
        .map_err(|e| Error::Options(format!("cannot encode the registration: {e}")))
    }
}

/// A running self-registration. Call [`Agent::shutdown`] before the listener closes.
#[derive(Debug)]
pub struct Agent {
    client: RegistryClient,
    registration: Registration,
    stop: CancellationToken,
    task: JoinHandle<()>,
    registered: watch::Receiver<bool>,
}

impl Agent {
    /// Starts registering in the background; returns at once.
    pub fn start(client: RegistryClient, registration: Registration) -> Self {
        let stop = CancellationToken::new();
        let (tx, registered) = watch::channel(false);
        let task = tokio::spawn(keep_registered(
            client.clone(),
            registration.clone(),
            stop.clone(),
            tx,
        ));
        Self {
            client,
            registration,
            stop,
            task,
            registered,
        }
    }

    /// Whether the registry currently has the registration (false until the first success and
    /// while re-registering).
    pub fn registered(&self) -> watch::Receiver<bool> {
        self.registered.clone()
    }

    /// Marks the instance draining (discovery stops returning it), waits `drain_grace`, then
    /// deregisters. Best effort: a registry that is down is reported, not waited for.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.cancel();
        let _ = self.task.await;
        let i = &self.registration.instance;
        let base = format!("/api/v1/registry/services/{}/instances/{}", i.name, i.id);
        let timeout = self.client.inner.options.timeout;
        self.client
            .call(http::Method::PUT, &format!("{base}/drain"), None, timeout)
            .await?;
        tokio::time::sleep(self.registration.drain_grace).await;
        match self
            .client
            .call(http::Method::DELETE, &base, None, timeout)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn register(client: &RegistryClient, r: &Registration) -> Result<(), Error> {
    let timeout = client.inner.options.timeout;
    client
        .call(
            http::Method::POST,
            "/api/v1/registry/instances",
            Some(r.body()?),
            timeout,
        )
        .await?;
    Ok(())
}

async fn heartbeat(client: &RegistryClient, r: &Registration) -> Result<(), Error> {
    let i = &r.instance;
    let path = format!(
        "/api/v1/registry/services/{}/instances/{}/heartbeat",
        i.name, i.id
    );
    let body = serde_json::to_vec(&json!({ "status": HealthStatus::Passing }))
        .map_err(|e| Error::Options(e.to_string()))?;
    client
        .call(
            http::Method::PUT,
            &path,
            Some(body),
            client.inner.options.timeout,
        )
        .await
        .map(drop)
}

async fn still_known(client: &RegistryClient, r: &Registration) -> Result<(), Error> {
    let i = &r.instance;
    let path = format!("/api/v1/registry/services/{}/instances/{}", i.name, i.id);
    client
        .call(http::Method::GET, &path, None, client.inner.options.timeout)
        .await
        .map(drop)
}

async fn keep_registered(
    client: RegistryClient,
    r: Registration,
    stop: CancellationToken,
    registered: watch::Sender<bool>,
) {
    let (min, max) = (
        client.inner.options.min_backoff,
        client.inner.options.max_backoff,
    );
    let mut backoff = min;
    let period = match r.check {
        Check::Ttl { ttl, .. } => ttl / 3,
        Check::Http { .. } => r.verify_every,
    };
    loop {
        if let Err(e) = register(&client, &r).await {
            tracing::warn!(service = %r.instance.name, error = %e, ?backoff, "cannot register; will retry");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(jittered(backoff)) => {}
            }
            backoff = (backoff * 2).min(max);
            continue;
        }
        backoff = min;
        registered.send_replace(true);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let alive = match r.check {
                Check::Ttl { .. } => heartbeat(&client, &r).await,
                Check::Http { .. } => still_known(&client, &r).await,
            };
            if let Err(e) = alive {
                // Forgotten (registry restarted without its catalog) or unreachable: register
                // again, with backoff while it stays down.
                tracing::info!(service = %r.instance.name, error = %e, "registration lost; registering again");
                registered.send_replace(false);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::ServiceName;

    #[test]
    fn registrations_encode_as_the_registry_expects() {
        let instance = ServiceInstance::new(ServiceName::new("users").unwrap(), "h", 80);
        let ttl = Check::Ttl {
            ttl: Duration::from_secs(15),
            deregister_after: Some(Duration::from_secs(60)),
        };
        let body: Value =
            serde_json::from_slice(&Registration::new(instance.clone(), ttl).body().unwrap())
                .unwrap();
        assert_eq!(body["name"], "users");
        assert_eq!(body["id"], "users-h-80");
        assert_eq!(
            body["check"],
            json!({"type": "ttl", "ttl": "15000ms", "deregister_after": "60000ms"})
        );
        assert_eq!(
            body["status"], "passing",
            "a TTL registration is a heartbeat"
        );
        let http = Check::Http {
            path: "/health".into(),
            interval: Duration::from_secs(2),
            deregister_after: None,
        };
        let mut reg = Registration::new(instance, http);
        let body: Value = serde_json::from_slice(&reg.body().unwrap()).unwrap();
        assert_eq!(
            body["check"],
            json!({"type": "http", "path": "/health", "interval": "2000ms", "timeout": "2000ms"})
        );
        assert!(body.get("status").is_none(), "critical until checked");
        reg.starts_passing = true;
        let body: Value = serde_json::from_slice(&reg.body().unwrap()).unwrap();
        assert_eq!(body["status"], "passing");
    }
}
