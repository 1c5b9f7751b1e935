//! The outer step of every service's pipeline as one hand-written tower `Service`: request
//! id, trace context, span, access log and metrics ([`crate::middleware::begin`]), the
//! request-target limit, the request body limit, the request timeout and the cut of unending
//! bodies at the shutdown deadline. As `axum::middleware::from_fn` layers these cost a boxed
//! clone of the inner service and a boxed future each per request, tower-http's timeout a
//! second timer, and every `Router::layer` a boxed clone and a boxed future more; here a
//! request costs one boxed future and one timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse as _, Response};
use http::{StatusCode, header};
use http_body::Body as _;
use tokio_util::sync::CancellationToken;

use crate::middleware::{Observe, RouteMetrics, begin};

/// What the step needs, shared by every route it wraps.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) observe: Observe,
    /// Longest request target (path and query) served; longer ones get 414.
    pub(crate) max_uri_bytes: usize,
    /// Largest request body accepted; larger ones get 413.
    pub(crate) body_limit: usize,
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
            shared: Arc::new(Shared {
                settings: self.0.clone(),
                route: OnceLock::new(),
            }),
        }
    }
}

/// One wrapped route's state: the settings, and the route template with its metric handles
/// once its first request has named it.
#[derive(Debug)]
struct Shared {
    settings: Arc<Settings>,
    /// Axum wraps each route (each method's handler, each fallback) on its own, so a wrapped
    /// service nearly always serves one template; it is still compared on every request,
    /// and another template is looked up as usual.
    route: OnceLock<Arc<RouteMetrics>>,
}

impl Shared {
    fn route(&self, req: &Request) -> Arc<RouteMetrics> {
        let template = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        match self.route.get() {
            Some(route) if route.name.as_str() == template => route.clone(),
            _ => {
                let route = self.settings.observe.routes.get(template);
                let _ = self.route.set(route.clone());
                route
            }
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ObserveService<S> {
    inner: S,
    shared: Arc<Shared>,
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

    fn call(&mut self, mut req: Request) -> Self::Future {
        let shared = self.shared.clone();
        let s = &*shared.settings;
        let route = shared.route(&req);
        let observed = begin(&s.observe, &route, &mut req);
        // The inner service, ready since `poll_ready`, is called now rather than cloned into
        // the future; its future runs under the request timeout.
        let handled = if crate::limits::uri_too_long(&req, s.max_uri_bytes) {
            Err(StatusCode::URI_TOO_LONG)
        } else {
            match limit_body(req, s.body_limit) {
                Some(req) => Ok(observed.enter(|| self.inner.call(req))),
                None => Err(StatusCode::PAYLOAD_TOO_LARGE),
            }
        };
        let timeout = s.request_timeout;
        Box::pin(async move {
            let run = async move {
                match handled {
                    Err(status) => status.into_response(),
                    Ok(inner) => match tokio::time::timeout(timeout, inner).await {
                        Ok(Ok(res)) => res,
                        Ok(Err(never)) => match never {},
                        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    },
                }
            };
            let s = &*shared.settings;
            let res = observed.finish(&s.observe, &route, run).await;
            Ok(crate::streams::cut_at_deadline(res, &s.cut_streams))
        })
    }
}

/// The body limit: `None` (413) when the declared `Content-Length` is over `limit`. A body
/// of declared length cannot run longer (the server reads that many bytes), so only bodies
/// of unknown length are wrapped to fail past `limit`, which extractors answer with 413.
fn limit_body(req: Request, limit: usize) -> Option<Request> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let declared = len.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        return match declared {
            Some(n) if n <= limit as u64 => Some(req),
            // An unreadable length is the server's to refuse; limit the body all the same.
            None => Some(req.map(|b| Body::new(http_body_util::Limited::new(b, limit)))),
            Some(_) => None,
        };
    }
    if req.body().is_end_stream() {
        return Some(req);
    }
    Some(req.map(|b| Body::new(http_body_util::Limited::new(b, limit))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use axum::Router;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    use flotilla_testkit::prometheus;
    use tower::ServiceExt as _;

    const LIMIT: usize = 1024;

    fn app(metrics: &Metrics) -> Router {
        let settings = Settings {
            observe: Observe {
                metrics: metrics.http.clone(),
                routes: Default::default(),
            },
            max_uri_bytes: 1024,
            body_limit: LIMIT,
            request_timeout: Duration::from_secs(30),
            cut_streams: CancellationToken::new(),
        };
        Router::new()
            .route(
                "/echo",
                post(|body: bytes::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/items/{id}",
                get(|| async { "item" }).post(|| async { "made" }),
            )
            .layer((ObserveLayer::new(settings), DefaultBodyLimit::max(LIMIT)))
    }

    /// A body of `n` bytes in chunks of 100, of unknown length (no `Content-Length`).
    fn streamed(n: usize) -> Body {
        let chunks = (0..n.div_ceil(100)).map(move |i| {
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; (n - i * 100).min(100)]))
        });
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn send(app: &Router, req: http::Request<Body>) -> (u16, String) {
        let res = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {});
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn post_echo(body: Body, length: Option<usize>) -> http::Request<Body> {
        let mut req = http::Request::post("/echo");
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        req.body(body).unwrap_or_default()
    }

    #[tokio::test]
    async fn one_body_limit_holds_for_declared_and_unknown_lengths() {
        let app = app(&Metrics::new());
        let at_limit = vec![b'x'; LIMIT];
        assert_eq!(
            send(&app, post_echo(Body::from(at_limit), Some(LIMIT))).await,
            (200, LIMIT.to_string())
        );
        let (status, body) = send(
            &app,
            post_echo(Body::from(vec![b'x'; LIMIT + 1]), Some(LIMIT + 1)),
        )
        .await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("larger than this service accepts"), "{body}");
        assert_eq!(
            send(&app, post_echo(streamed(LIMIT), None)).await,
            (200, LIMIT.to_string())
        );
        let (status, body) = send(&app, post_echo(streamed(LIMIT + 1), None)).await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("larger than this service accepts"), "{body}");
    }

    #[tokio::test]
    async fn requests_are_counted_by_method_route_and_status_class() {
        let metrics = Metrics::new();
        let app = app(&metrics);
        let req = |method: http::Method, path: &str| {
            http::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap_or_default()
        };
        for _ in 0..3 {
            assert_eq!(send(&app, req(http::Method::GET, "/items/1")).await.0, 200);
        }
        assert_eq!(send(&app, req(http::Method::POST, "/items/2")).await.0, 200);
        assert_eq!(
            send(&app, req(http::Method::DELETE, "/items/2")).await.0,
            405
        );
        assert_eq!(send(&app, req(http::Method::GET, "/nowhere")).await.0, 404);
        assert_eq!(
            send(&app, req(http::Method::GET, "/nowhere/else")).await.0,
            404
        );
        let samples = prometheus::parse(&metrics.encode()).unwrap_or_default();
        let count =
            |labels: &[(&str, &str)]| prometheus::sum(&samples, "http_requests_total", labels);
        let item = [("route", "/items/{id}")];
        assert_eq!(count(&[item[0], ("method", "GET"), ("status", "2xx")]), 3.0);
        assert_eq!(
            count(&[item[0], ("method", "POST"), ("status", "2xx")]),
            1.0
        );
        assert_eq!(
            count(&[item[0], ("method", "DELETE"), ("status", "4xx")]),
            1.0
        );
        assert_eq!(count(&[("route", "unmatched"), ("status", "4xx")]), 2.0);
        assert_eq!(count(&[]), 7.0);
        let observed = |labels: &[(&str, &str)]| {
            prometheus::sum(&samples, "http_request_duration_seconds_count", labels)
        };
        assert_eq!(observed(&[item[0], ("method", "GET")]), 3.0);
        assert_eq!(observed(&[("route", "unmatched")]), 2.0);
        // Series exist only once they have a request.
        assert!(!samples.iter().any(|s| s.name == "http_requests_total"
            && s.labels.get("status").is_some_and(|v| v == "5xx")));
    }
}
