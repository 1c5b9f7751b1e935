//! Fallback: turns a failed call into a configured answer (a cached value, a default, a
//! degraded response) when the breaker is open or retries are spent, instead of an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use flotilla_core::{Blame, ErrorKind};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::BoxError;

/// Answers errors with `F`'s response when it returns one; other errors pass through.
pub struct FallbackLayer<F> {
    fallback: Arc<F>,
}

impl<F> Clone for FallbackLayer<F> {
    fn clone(&self) -> Self {
        Self {
            fallback: self.fallback.clone(),
        }
    }
}

impl<F> std::fmt::Debug for FallbackLayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FallbackLayer")
    }
}

impl<F> FallbackLayer<F> {
    /// A fallback computed by `fallback` from the error.
    pub fn new(fallback: F) -> Self {
        Self {
            fallback: Arc::new(fallback),
        }
    }
}

/// A fallback answering `status` with `body` when the upstream is unavailable (open breaker,
/// no instance) or failed after every retry (timeouts, transport errors); refusals blamed on
/// the caller (rate limits) pass through.
pub fn static_response<R>(
    status: StatusCode,
    body: R,
) -> impl Fn(&BoxError) -> Option<Response<R>> + Send + Sync + 'static
where
    R: Clone + Send + Sync + 'static,
{
    move |e: &BoxError| {
        let class = crate::error::classify(e.as_ref());
        let applies = class.blame == Blame::Upstream || class.kind == ErrorKind::Unavailable;
        applies.then(|| {
            let mut r = Response::new(body.clone());
            *r.status_mut() = status;
            r
        })
    }
}

impl<S, F> Layer<S> for FallbackLayer<F> {
    type Service = Fallback<S, F>;
    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            fallback: self.fallback.clone(),
        }
    }
}

/// A service with a fallback.
pub struct Fallback<S, F> {
    inner: S,
    fallback: Arc<F>,
}

impl<S: Clone, F> Clone for Fallback<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<S: std::fmt::Debug, F> std::fmt::Debug for Fallback<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, Req, R> Service<Req> for Fallback<S, F>
where
    S: Service<Req, Response = Response<R>>,
    S::Error: Into<BoxError>,
    F: Fn(&BoxError) -> Option<Response<R>>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            fallback: self.fallback.clone(),
        }
    }
}

pin_project! {
    /// The future of [`Fallback`].
    pub struct ResponseFuture<Fut, F> {
        #[pin]
        inner: Fut,
        fallback: Arc<F>,
    }
}

impl<Fut, F, R, E> Future for ResponseFuture<Fut, F>
where
    Fut: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
    F: Fn(&BoxError) -> Option<Response<R>>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(r) => Ok(r),
            Err(e) => {
                let e: BoxError = e.into();
                (this.fallback)(&e).ok_or(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn open_breaker_gets_the_fallback_and_rate_limits_do_not() {
        let layer = FallbackLayer::new(static_response(StatusCode::OK, "cached"));
        let open = layer.layer(service_fn(|_: ()| async {
            Err::<Response<&str>, BoxError>(
                Error::CircuitOpen {
                    upstream: "users".into(),
                }
                .into(),
            )
        }));
        assert_eq!(*open.oneshot(()).await.unwrap().body(), "cached");
        let limited = layer.layer(service_fn(|_: ()| async {
            Err::<Response<&str>, BoxError>(
                Error::RateLimited {
                    retry_after: Default::default(),
                }
                .into(),
            )
        }));
        assert!(limited.oneshot(()).await.is_err());
    }
}
