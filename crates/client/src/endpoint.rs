//! The bottom of the client's stack: pick an instance, address the request to it, send it on
//! the pooled connection, read the body, and tell the balancer how it went.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use flotilla_discovery::ServiceSet;
use flotilla_resilience::balance::Balancer;
use flotilla_resilience::{BoxError, Error, deadline};
use http::{HeaderName, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::watch;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends one attempt to one instance of a service.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) service: Arc<str>,
    pub(crate) http: HttpClient,
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) instances: watch::Receiver<ServiceSet>,
    pub(crate) hash_header: Option<HeaderName>,
    /// Longest response body read into memory; a longer one fails the call.
    pub(crate) max_response_bytes: usize,
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
        // The pooled client has no back-pressure of its own; the bulkhead provides it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        {
            let set = self.instances.borrow();
            self.balancer.update(set.revision, set.routable());
        }
        let key = self
            .hash_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .map(|v| v.as_bytes());
        let Some(pick) = self.balancer.pick(key) else {
            let e = Error::NoHealthyInstance {
                service: self.service.clone(),
            };
            return Box::pin(std::future::ready(Err(e.into())));
        };
        let http = self.http.clone();
        let limit = self.max_response_bytes;
        Box::pin(async move {
            *req.uri_mut() = instance_uri(&pick.instance().base_url(), req.uri())?;
            deadline::propagate(&mut req)?;
            let resp = match http.request(req).await {
                Ok(r) => r,
                Err(e) => {
                    pick.finish(false);
                    return Err(Error::Transport {
                        connect: e.is_connect(),
                        source: e.into(),
                    }
                    .into());
                }
            };
            let (parts, body) = resp.into_parts();
            match Limited::new(body, limit).collect().await {
                Ok(body) => {
                    pick.finish(!parts.status.is_server_error());
                    Ok(Response::from_parts(parts, body.to_bytes()))
                }
                Err(e) => {
                    pick.finish(false);
                    if e.is::<http_body_util::LengthLimitError>() {
                        return Err(ResponseTooLarge { limit }.into());
                    }
                    Err(Error::Transport {
                        connect: false,
                        source: e,
                    }
                    .into())
                }
            }
        })
    }
}

fn instance_uri(base: &str, uri: &Uri) -> Result<Uri, BoxError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("{base}{path}").parse::<Uri>()?)
}
