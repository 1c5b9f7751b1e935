//! Push subscriptions: the delivery engine with a handler that POSTs each event to a URL, so
//! webhooks get the same retry, backoff and dead-letter policy as in-process handlers.
//!
//! Answer mapping: 2xx acks; 429 and 5xx retry (honouring a `Retry-After` in seconds);
//! other 4xx mean the receiver will never take this event, so it is dead-lettered at once;
//! a connection failure retries.
//!
//! A push to a service with no routable instance right now (a restart, a deploy) is not a
//! failed attempt: nobody was asked. The delivery waits for an instance to appear, up to
//! `wait_for_instance_ms`, and only then spends an attempt; otherwise a ten-second restart
//! would burn every attempt of the events published meanwhile and dead-letter them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::{Bus, DeliveryPolicy, Filter, HandlerError, Received, Subscription};
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::{Discovery, ServiceSet};
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use flotilla_dial::Connector;

/// One push subscription (`[[bus.http.push]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushOptions {
    /// The consumer group (durable: events wait while the receiver is down).
    pub group: String,
    /// The topic pattern.
    pub pattern: String,
    /// Where each event is POSTed (`http://`), in structured mode. Exactly one of `url` and
    /// `service` is set.
    #[serde(default)]
    pub url: Option<String>,
    /// A service, found through discovery: each event goes to one routable instance
    /// (weighted round robin) at `path`.
    #[serde(default)]
    pub service: Option<String>,
    /// The path on the service's instances (default `/events`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Which events to push.
    #[serde(default)]
    pub filter: Filter,
    /// Requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout in milliseconds (default 10 000); a timeout is a failed attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// With `service`: how long a delivery waits for a routable instance when there is none
    /// before it counts as a failed attempt, in milliseconds (default 60 000, at most one
    /// hour). The wait ends as soon as discovery reports an instance.
    #[serde(default = "default_wait_for_instance_ms")]
    pub wait_for_instance_ms: u64,
    /// Max deliveries and backoff.
    #[serde(default)]
    pub policy: DeliveryPolicy,
}

fn default_path() -> String {
    "/events".into()
}

fn default_concurrency() -> usize {
    4
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_wait_for_instance_ms() -> u64 {
    60_000
}

/// The longest `wait_for_instance_ms`: an event's lease covers the wait, so it must stay
/// bounded.
const MAX_WAIT_FOR_INSTANCE_MS: u64 = 3_600_000;

type HttpClient = Client<Connector, Full<Bytes>>;

/// Where a push subscription sends events.
#[derive(Debug)]
enum Target {
    Url(Uri),
    Service {
        name: ServiceName,
        set: watch::Receiver<ServiceSet>,
        path: String,
        turn: AtomicU64,
        wait: Duration,
    },
}

impl Target {
    fn new(options: &PushOptions, discovery: Option<&Arc<dyn Discovery>>) -> Result<Self, Error> {
        match (&options.url, &options.service) {
            (Some(url), None) => Ok(Self::Url(http_uri(url)?)),
            (None, Some(service)) => {
                let name =
                    ServiceName::new(service.clone()).map_err(|e| Error::Config(e.to_string()))?;
                let discovery = discovery.ok_or_else(|| {
                    Error::Config(format!("push to service {service:?} needs discovery"))
                })?;
                if options.wait_for_instance_ms > MAX_WAIT_FOR_INSTANCE_MS {
                    return Err(Error::Config(format!(
                        "push subscription {:?}: wait_for_instance_ms {} is over the limit of {MAX_WAIT_FOR_INSTANCE_MS}",
                        options.group, options.wait_for_instance_ms
                    )));
                }
                Ok(Self::Service {
                    set: discovery.watch(&name),
                    name,
                    path: options.path.clone(),
                    turn: AtomicU64::new(0),
                    wait: Duration::from_millis(options.wait_for_instance_ms),
                })
            }
            _ => Err(Error::Config(format!(
                "push subscription {:?} needs exactly one of url and service",
                options.group
            ))),
        }
    }

    /// How long a delivery may take beyond its request: the wait for an instance.
    fn max_wait(&self) -> Duration {
        match self {
            Self::Url(_) => Duration::ZERO,
            Self::Service { wait, .. } => *wait,
        }
    }

    /// The URI for the next request. With no routable instance, waits up to the configured
    /// bound for one; still none is a failed attempt (retried by the policy).
    async fn next(&self) -> Result<Uri, HandlerError> {
        match self {
            Self::Url(u) => Ok(u.clone()),
            Self::Service {
                name,
                set,
                path,
                turn,
                wait,
            } => {
                let mut set = set.clone();
                if !has_instance(&set.borrow()) {
                    tracing::info!(service = %name, ?wait, "no routable instance to push to; waiting for one");
                    let _ = tokio::time::timeout(*wait, set.wait_for(has_instance)).await;
                }
                let n = turn.fetch_add(1, Ordering::Relaxed);
                let base = set
                    .borrow()
                    .pick_weighted(n)
                    .map(ServiceInstance::base_url)
                    .ok_or_else(|| {
                        HandlerError::retry(format!(
                            "no routable instance of {name} within {}ms",
                            wait.as_millis()
                        ))
                    })?;
                format!("{base}{path}")
                    .parse()
                    .map_err(|e| HandlerError::retry(format!("bad instance address {base}: {e}")))
            }
        }
    }
}

fn has_instance(set: &ServiceSet) -> bool {
    set.pick_weighted(0).is_some()
}

fn http_uri(url: &str) -> Result<Uri, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::Config(format!("push url {url:?}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(Error::Config(format!("push url {url:?} must be http://")));
    }
    Ok(uri)
}

/// Starts one push subscription.
pub(crate) async fn start(
    bus: &Bus,
    options: &PushOptions,
    discovery: Option<&Arc<dyn Discovery>>,
    connector: Connector,
    shutdown: &CancellationToken,
) -> Result<Subscription, Error> {
    let target = Arc::new(Target::new(options, discovery)?);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let timeout = Duration::from_millis(options.timeout_ms);
    let sub = bus
        .subscribe(&options.pattern)
        .group(&options.group)
        .filter(options.filter.clone())
        .concurrency(options.concurrency)
        // The request has its own timeout below; the handler's (and so the lease) also
        // covers the wait for an instance.
        .handler_timeout(timeout.saturating_add(target.max_wait()))
        .policy(options.policy.clone())
        .shutdown_on(shutdown)
        .handler(move |r| deliver(client.clone(), Arc::clone(&target), timeout, r))
        .await?;
    Ok(sub)
}

async fn deliver(
    client: HttpClient,
    target: Arc<Target>,
    timeout: Duration,
    r: Received,
) -> Result<(), HandlerError> {
    let uri = target.next().await?;
    let body = Bytes::from(r.event.to_json_value().to_string());
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .body(Full::new(body))
        .map_err(|e| HandlerError::reject(format!("cannot build the request: {e}")))?;
    let res = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| HandlerError::retry(format!("push timed out after {timeout:?}")))?
        .map_err(|e| HandlerError::retry(format!("push failed: {e}")))?;
    judge(res.status(), retry_after(res.headers()))
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    // A receiver's header is untrusted input: cap it so a huge value cannot park an event for
    // ever (or overflow a deadline) instead of retrying or dead-lettering it.
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)))
}

/// The longest delay a receiver's `Retry-After` can ask for: one hour.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

fn judge(status: StatusCode, retry_after: Option<Duration>) -> Result<(), HandlerError> {
    let msg = format!("receiver answered {status}");
    match status {
        s if s.is_success() => Ok(()),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => Err(match retry_after {
            Some(d) => HandlerError::retry_after(d, msg),
            None => HandlerError::retry(msg),
        }),
        _ => Err(HandlerError::reject(msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_answers_map_to_ack_retry_or_dead_letter() {
        assert!(judge(StatusCode::NO_CONTENT, None).is_ok());
        let retry = judge(StatusCode::SERVICE_UNAVAILABLE, None).unwrap_err();
        assert!(format!("{retry:?}").starts_with("Retry(None)"), "{retry:?}");
        let later = judge(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3))).unwrap_err();
        assert!(
            format!("{later:?}").starts_with("Retry(Some(3s))"),
            "{later:?}"
        );
        let reject = judge(StatusCode::UNPROCESSABLE_ENTITY, None).unwrap_err();
        assert!(format!("{reject:?}").starts_with("Reject"), "{reject:?}");
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn a_hostile_retry_after_is_capped_at_an_hour() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::RETRY_AFTER,
            http::HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(5)));
    }
}
