//! Bulkhead: at most `max_concurrent` calls in flight to an upstream, at most `max_queue` more
//! waiting for a slot, and immediate rejection beyond that, so one slow upstream cannot take
//! every connection and task of the caller with it.
//!
//! tower's `ConcurrencyLimit` waits in `poll_ready` without bound, which is the behaviour a
//! bulkhead exists to prevent; this layer admits in `call` and refuses synchronously instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service, ServiceExt};

use crate::metrics::Metrics;
use crate::{BoxError, Error};

/// The shared state of one bulkhead; clone the layer to share it between services.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    upstream: Arc<str>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
    metrics: Option<Metrics>,
}

impl BulkheadLayer {
    /// A bulkhead for `upstream` with `max_concurrent` slots and `max_queue` waiters.
    pub fn new(
        upstream: &str,
        max_concurrent: usize,
        max_queue: usize,
        metrics: Option<Metrics>,
    ) -> Self {
        Self {
            upstream: upstream.into(),
            slots: Arc::new(Semaphore::new(max_concurrent.min(Semaphore::MAX_PERMITS))),
            waiting: Arc::default(),
            max_queue,
            metrics,
        }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;
    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead {
            inner,
            shared: self.clone(),
        }
    }
}

/// A service behind a bulkhead.
#[derive(Debug, Clone)]
pub struct Bulkhead<S> {
    inner: S,
    shared: BulkheadLayer,
}

type Waiting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, Req> Service<Req> for Bulkhead<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.shared;
        if let Ok(permit) = shared.slots.clone().try_acquire_owned() {
            return ResponseFuture::Admitted {
                inner: self.inner.call(req),
                permit: Some(permit),
            };
        }
        // Reserve a queue place atomically so concurrent callers cannot overfill the queue.
        let queued = shared
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < shared.max_queue).then_some(w + 1)
            });
        if queued.is_err() {
            if let Some(m) = &shared.metrics {
                m.rejected(&shared.upstream, "bulkhead_full");
            }
            let error = Error::BulkheadFull {
                upstream: shared.upstream.clone(),
            };
            return ResponseFuture::Rejected { error: Some(error) };
        }
        // The readied service is taken for this call and a fresh clone left behind, as the
        // waiting call will drive its own readiness once a slot frees.
        let svc = self.inner.clone();
        let (slots, waiting) = (shared.slots.clone(), shared.waiting.clone());
        ResponseFuture::Queued {
            wait: Box::pin(async move {
                let permit = slots.acquire_owned().await;
                waiting.fetch_sub(1, Ordering::AcqRel);
                let _permit = permit?;
                svc.oneshot(req).await.map_err(Into::into)
            }),
        }
    }
}

pin_project! {
    /// The future of [`Bulkhead`]: admitted at once, queued for a slot, or rejected.
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, T> {
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        Queued { wait: Waiting<T> },
        Rejected { error: Option<Error> },
    }
}

impl<F, T, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Admitted { inner, permit } => {
                let out = std::task::ready!(inner.poll(cx));
                permit.take();
                Poll::Ready(out.map_err(Into::into))
            }
            Proj::Queued { wait } => wait.as_mut().poll(cx),
            Proj::Rejected { error } => {
                let e = error.take().unwrap_or(Error::BulkheadFull {
                    upstream: "unknown".into(),
                });
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::service_fn;

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_slots_and_queue_are_rejected_at_once() {
        let inner = service_fn(|d: u64| async move {
            tokio::time::sleep(Duration::from_millis(d)).await;
            Ok::<_, BoxError>(d)
        });
        let svc = BulkheadLayer::new("users", 2, 1, None).layer(inner);
        let running: Vec<_> = (0..3)
            .map(|_| tokio::spawn(svc.clone().oneshot(100)))
            .collect();
        tokio::task::yield_now().await;
        let err = svc.clone().oneshot(1).await.unwrap_err();
        assert!(matches!(
            crate::error::find(err.as_ref()),
            Some(Error::BulkheadFull { .. })
        ));
        for r in running {
            assert_eq!(
                r.await.unwrap().unwrap(),
                100,
                "admitted and queued calls complete"
            );
        }
        assert_eq!(
            svc.oneshot(1).await.unwrap(),
            1,
            "slots are freed afterwards"
        );
    }
}
