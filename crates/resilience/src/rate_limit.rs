//! Rate limiting with GCRA (through `governor`), keyed by whatever the caller extracts from a
//! request: a client address, a route, an API key, or one global key. `burst` calls may arrive
//! at once; after that calls are admitted at `per_second`.

use std::fmt;
use std::future::{Ready, ready};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::Request;
use tower::{Layer, Service};

use crate::metrics::Metrics;
use crate::{BoxError, Error};

/// A keyed GCRA limiter plus the function that keys requests; clones share the limiter.
pub struct RateLimitLayer<K: Hash + Eq + Clone, F> {
    limiter: Arc<DefaultKeyedRateLimiter<K>>,
    key: F,
    name: Arc<str>,
    metrics: Option<Metrics>,
}

impl<K: Hash + Eq + Clone, F: Clone> Clone for RateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            name: self.name.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone, F> fmt::Debug for RateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, F> RateLimitLayer<K, F> {
    /// Admits `per_second` calls per key with bursts of `burst`, keying requests with `key`.
    /// `name` labels rejections in metrics.
    pub fn new(
        name: &str,
        per_second: NonZeroU32,
        burst: NonZeroU32,
        key: F,
        metrics: Option<Metrics>,
    ) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            key,
            name: name.into(),
            metrics,
        }
    }

    /// Forgets keys that are back to a full burst; call periodically so hostile keys
    /// cannot grow the table without bound.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }
}

impl<S, K: Hash + Eq + Clone, F: Clone> Layer<S> for RateLimitLayer<K, F> {
    type Service = RateLimit<S, K, F>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.clone(),
        }
    }
}

/// A rate-limited service.
#[derive(Clone, Debug)]
pub struct RateLimit<S, K: Hash + Eq + Clone, F> {
    inner: S,
    shared: RateLimitLayer<K, F>,
}

impl<S, K, F, B> Service<Request<B>> for RateLimit<S, K, F>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
    F: Fn(&Request<B>) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<
        futures_util::future::ErrInto<S::Future, BoxError>,
        Ready<Result<S::Response, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        let key = (self.shared.key)(&req);
        match self.shared.limiter.check_key(&key) {
            Ok(()) => Either::Left(self.inner.call(req).err_into()),
            Err(not_until) => {
                if let Some(m) = &self.shared.metrics {
                    m.rejected(&self.shared.name, "rate_limited");
                }
                let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                Either::Right(ready(Err(Error::RateLimited { retry_after }.into())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[tokio::test]
    async fn a_burst_is_admitted_then_each_key_is_limited_separately() {
        let key = |r: &Request<()>| r.headers().get("x-api-key").map(|v| v.as_bytes().to_vec());
        let layer = RateLimitLayer::new("api", nz(1), nz(3), key, None);
        let svc = layer.layer(service_fn(|_r: Request<()>| async {
            Ok::<_, BoxError>(())
        }));
        let req = |k: &'static str| Request::builder().header("x-api-key", k).body(()).unwrap();
        for _ in 0..3 {
            svc.clone().oneshot(req("a")).await.unwrap();
        }
        let err = svc.clone().oneshot(req("a")).await.unwrap_err();
        match crate::error::find(err.as_ref()) {
            Some(Error::RateLimited { retry_after }) => assert!(!retry_after.is_zero()),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        svc.oneshot(req("b")).await.unwrap();
    }
}
