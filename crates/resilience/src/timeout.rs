//! Timeout with deadline propagation.
//!
//! Each call gets the earlier of its own timeout and the deadline it already carries (set by an
//! outer layer or read from the caller's header). The effective deadline is stored back in the
//! request so inner layers (retry backoff) and the next hop (through
//! [`crate::deadline::propagate`]) see it. A call whose deadline has already passed is never
//! handed to the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::deadline::Deadline;
use crate::{BoxError, Error};

/// Applies [`Timeout`] to a service.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Calls through this layer take at most `timeout`, or less when their deadline is sooner.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Bounds each call by a timeout and the request's propagated deadline.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let own = Deadline::after(self.timeout);
        let inherited = req.extensions().get::<Deadline>().copied();
        let effective = own.min(inherited);
        // Which limit fires decides the error: our own timeout may be retried by an outer
        // layer, a spent caller deadline may not.
        let on_expiry = if effective == own {
            Error::Timeout(self.timeout)
        } else {
            Error::DeadlineExceeded
        };
        if effective.expired() {
            return ResponseFuture::Expired {
                error: Some(on_expiry),
            };
        }
        req.extensions_mut().insert(effective);
        ResponseFuture::Running {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep_until(effective.0),
            error: Some(on_expiry),
        }
    }
}

pin_project! {
    /// The future of [`Timeout`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        Running { #[pin] inner: F, #[pin] sleep: Sleep, error: Option<Error> },
        Expired { error: Option<Error> },
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Running {
                inner,
                sleep,
                error,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                ready!(sleep.poll(cx));
                Poll::Ready(Err(take(error).into()))
            }
            Proj::Expired { error } => Poll::Ready(Err(take(error).into())),
        }
    }
}

fn take(error: &mut Option<Error>) -> Error {
    // A future polled again after completion breaks the Future contract; answer with a
    // deadline error rather than panicking on the request path.
    error.take().unwrap_or(Error::DeadlineExceeded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceExt, service_fn};

    fn slow(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<
        Request<()>,
        Response = Option<Deadline>,
        Error = BoxError,
        Future = impl Future + Send,
    > + Clone {
        service_fn(move |req: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, BoxError>(req.extensions().get::<Deadline>().copied())
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn own_timeout_fires_as_a_retryable_timeout() {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = TimeoutLayer::new(Duration::from_millis(50)).layer(slow(calls.clone()));
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert!(matches!(
            crate::error::find(err.as_ref()),
            Some(Error::Timeout(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_deadline_is_never_sent() {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = TimeoutLayer::new(Duration::from_secs(1)).layer(slow(calls.clone()));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_millis(5)));
        tokio::time::advance(Duration::from_millis(6)).await;
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(matches!(
            crate::error::find(err.as_ref()),
            Some(Error::DeadlineExceeded)
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sooner_inherited_deadline_wins_and_is_passed_inward() {
        let svc = TimeoutLayer::new(Duration::from_secs(30)).layer(service_fn(
            |req: Request<()>| async move {
                Ok::<_, BoxError>(req.extensions().get::<Deadline>().copied())
            },
        ));
        let mut req = Request::new(());
        let inherited = Deadline::after(Duration::from_secs(2));
        req.extensions_mut().insert(inherited);
        assert_eq!(svc.oneshot(req).await.unwrap(), Some(inherited));
    }
}
