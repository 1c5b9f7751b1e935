//! The bottom of the client's stack: pick an instance, address the request to it, send it on
//! the pooled connection, read the body, and tell the balancer how it went.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flotilla_discovery::ServiceSet;
use flotilla_resilience::balance::{Balancer, Pick};
use flotilla_resilience::{BoxError, Error, deadline};
use http::{HeaderName, Request, Response};
use http_body_util::Full;
use tokio::sync::watch;

use crate::pool::{Pool, SendError};

/// Sends one attempt to one instance of a service. The policy layers clone it for every call,
/// so it is one `Arc`: a clone is a reference-count increment, not a copy of the pooled
/// pool, the balancer, the discovery receiver and the name.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint(Arc<Settings>);

impl Endpoint {
    pub(crate) fn new(settings: Settings) -> Self {
        Self(Arc::new(settings))
    }
}

/// What an [`Endpoint`] sends with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) service: Arc<str>,
    /// Connections to the service's instances.
    pub(crate) pool: Pool,
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) instances: watch::Receiver<ServiceSet>,
    pub(crate) hash_header: Option<HeaderName>,
    /// Longest response body read into memory; a longer one fails the call.
    pub(crate) max_response_bytes: usize,
    /// How long a call waits for discovery's first answer about the service.
    pub(crate) discovery_wait: Duration,
}

/// A response body longer than the client's limit: the upstream answered, but with more than
/// the caller agreed to hold in memory. Not retried (the answer would be the same).
#[derive(Debug, thiserror::Error)]
#[error("response body exceeds the client's limit of {limit} bytes")]
pub(crate) struct ResponseTooLarge {
    pub(crate) limit: usize,
}

impl tower::Service<Request<Full<Bytes>>> for Endpoint {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pool has no back-pressure of its own; the bulkhead provides it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        let this = self.0.clone();
        Box::pin(async move {
            let pick = this.pick(&req).await?;
            // The URI stays the path and query; the pool addresses the instance (`Host`).
            deadline::propagate(&mut req)?;
            this.send(pick, req).await
        })
    }
}

impl Settings {
    /// An instance for `req`. While discovery has not answered for the service yet (a process
    /// that just started), waits up to `discovery_wait` for its first answer: failing with
    /// "no healthy instance" then would be wrong whenever the instances are there.
    async fn pick(&self, req: &Request<Full<Bytes>>) -> Result<Pick, BoxError> {
        let mut instances = self.instances.clone();
        if !flotilla_discovery::wait_known(&mut instances, self.discovery_wait).await {
            tracing::warn!(service = %self.service, wait = ?self.discovery_wait, "discovery has not answered for the service yet");
        }
        {
            let set = instances.borrow();
            self.balancer.update(set.revision, set.routable());
        }
        let key = self
            .hash_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .map(|v| v.as_bytes());
        self.balancer.pick(key).ok_or_else(|| {
            Error::NoHealthyInstance {
                service: self.service.clone(),
            }
            .into()
        })
    }

    async fn send(
        &self,
        pick: Pick,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, BoxError> {
        let limit = self.max_response_bytes;
        match self.pool.send(pick.instance(), req, limit).await {
            Ok(resp) => {
                pick.finish(!resp.status().is_server_error());
                Ok(resp)
            }
            Err(e) => {
                pick.finish(false);
                Err(match e {
                    SendError::Connect(source) => Error::Transport {
                        connect: true,
                        source,
                    }
                    .into(),
                    SendError::Transport(source) => Error::Transport {
                        connect: false,
                        source,
                    }
                    .into(),
                    SendError::TooLarge => ResponseTooLarge { limit }.into(),
                })
            }
        }
    }
}
