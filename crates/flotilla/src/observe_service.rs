//! The outer step of every service's pipeline as one hand-written tower `Service`: request
//! id, trace context, span, access log and metrics ([`crate::middleware::observe`]), the
//! request-target limit, the request timeout and the cut of unending bodies at the shutdown
//! deadline. As `axum::middleware::from_fn` layers these cost a boxed clone of the inner
//! service and a boxed future each per request, and tower-http's timeout a second timer;
//! here a request costs one boxed future and one timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::middleware::{Observe, observe};

/// What the step needs, shared by every route it wraps.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) observe: Observe,
    /// Longest request target (path and query) served; longer ones get 414.
    pub(crate) max_uri_bytes: usize,
    /// Longest time to the response head; past it the answer is 503.
    pub(crate) request_timeout: Duration,
    /// Cancelled at the shutdown deadline: bodies of unknown length end then.
    pub(crate) cut_streams: CancellationToken,
}

/// Wraps each route in [`ObserveService`].
#[derive(Debug, Clone)]
pub(crate) struct ObserveLayer(Arc<Settings>);

impl ObserveLayer {
    pub(crate) fn new(settings: Settings) -> Self {
        Self(Arc::new(settings))
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            settings: self.0.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ObserveService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> tower::Service<Request> for ObserveService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone stays for the next call; the instance polled ready serves this one.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let settings = self.settings.clone();
        Box::pin(async move {
            let s = &*settings;
            let res = observe(&s.observe, req, |req| guarded(inner, req, s)).await;
            Ok(crate::streams::cut_at_deadline(res, &s.cut_streams))
        })
    }
}

/// The request-target limit and the request timeout around the inner service.
async fn guarded<S>(mut inner: S, req: Request, s: &Settings) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    if crate::limits::uri_too_long(&req, s.max_uri_bytes) {
        return StatusCode::URI_TOO_LONG.into_response();
    }
    match tokio::time::timeout(s.request_timeout, inner.call(req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(never)) => match never {},
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
