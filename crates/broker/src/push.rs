//! Push subscriptions: the delivery engine with a handler that POSTs each event to a URL, so
//! webhooks get the same retry, backoff and dead-letter policy as in-process handlers.
//!
//! Answer mapping: 2xx acks; 429 and 5xx retry (honouring a `Retry-After` in seconds);
//! other 4xx mean the receiver will never take this event, so it is dead-lettered at once;
//! a connection failure retries.

use std::time::Duration;

use bytes::Bytes;
use flotilla_bus::{Bus, DeliveryPolicy, Filter, HandlerError, Received, Subscription};
use http::{Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// One push subscription (`[[bus.http.push]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushOptions {
    /// The consumer group (durable: events wait while the receiver is down).
    pub group: String,
    /// The topic pattern.
    pub pattern: String,
    /// Where each event is POSTed (`http://`), in structured mode.
    pub url: String,
    /// Which events to push.
    #[serde(default)]
    pub filter: Filter,
    /// Requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout in milliseconds (default 10 000); a timeout is a failed attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Max deliveries and backoff.
    #[serde(default)]
    pub policy: DeliveryPolicy,
}

fn default_concurrency() -> usize {
    4
}

fn default_timeout_ms() -> u64 {
    10_000
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Starts one push subscription.
pub(crate) async fn start(
    bus: &Bus,
    options: &PushOptions,
    shutdown: &CancellationToken,
) -> Result<Subscription, Error> {
    let uri: Uri = options
        .url
        .parse()
        .map_err(|e| Error::Config(format!("push url {:?}: {e}", options.url)))?;
    if uri.scheme_str() != Some("http") {
        return Err(Error::Config(format!(
            "push url {:?} must be http://",
            options.url
        )));
    }
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let sub = bus
        .subscribe(&options.pattern)
        .group(&options.group)
        .filter(options.filter.clone())
        .concurrency(options.concurrency)
        .handler_timeout(Duration::from_millis(options.timeout_ms))
        .policy(options.policy.clone())
        .shutdown_on(shutdown)
        .handler(move |r| deliver(client.clone(), uri.clone(), r))
        .await?;
    Ok(sub)
}

async fn deliver(client: HttpClient, uri: Uri, r: Received) -> Result<(), HandlerError> {
    let body = Bytes::from(r.event.to_json_value().to_string());
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .body(Full::new(body))
        .map_err(|e| HandlerError::reject(format!("cannot build the request: {e}")))?;
    let res = client
        .request(req)
        .await
        .map_err(|e| HandlerError::retry(format!("push failed: {e}")))?;
    judge(res.status(), retry_after(res.headers()))
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

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
