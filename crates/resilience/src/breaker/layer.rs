//! The breaker as a tower layer over HTTP services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{CircuitBreaker, Permit};
use crate::{BoxError, Error};

/// Guards a service with a shared [`CircuitBreaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl CircuitBreakerLayer {
    /// A layer using `breaker` (usually from a [`super::Registry`], shared per upstream).
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// A service whose calls pass through a circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

impl<S, B, R> Service<Request<B>> for CircuitBreakerService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => ResponseFuture::Running {
                inner: self.inner.call(req),
                permit: Some(permit),
                started: Instant::now(),
            },
            Err(e) => ResponseFuture::Refused { error: Some(e) },
        }
    }
}

pin_project! {
    /// The future of [`CircuitBreakerService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        Running { #[pin] inner: F, permit: Option<Permit>, started: Instant },
        Refused { error: Option<Error> },
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Running {
                inner,
                permit,
                started,
            } => {
                let out = ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(permit) = permit.take() {
                    judge(permit, &out, started.elapsed());
                }
                Poll::Ready(out)
            }
            Proj::Refused { error } => {
                let e = error.take().unwrap_or(Error::CircuitOpen {
                    upstream: "unknown".into(),
                });
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

fn judge<R>(permit: Permit, out: &Result<Response<R>, BoxError>, took: std::time::Duration) {
    let config = permit.breaker.config();
    let slow = took >= config.slow_call_duration;
    match out {
        Ok(resp) => {
            let failure = config.failure_statuses.contains(&resp.status().as_u16());
            permit.record(failure, slow);
        }
        // Refusals by inner layers say nothing about the upstream's health.
        Err(e) => match crate::error::find(e.as_ref()) {
            Some(
                Error::BulkheadFull { .. }
                | Error::RateLimited { .. }
                | Error::CircuitOpen { .. }
                | Error::DeadlineExceeded
                | Error::NoHealthyInstance { .. },
            ) => permit.release(),
            _ => permit.record(true, slow),
        },
    }
}
