//! Ending streaming responses at the shutdown deadline.
//!
//! A graceful shutdown waits for in-flight responses, and a server-sent-events stream never
//! finishes on its own. Once the deadline has passed, every response body of unknown length
//! still streaming ends cleanly (the client sees the end of the stream, not a hang), so its
//! connection closes instead of outliving the service.

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt as _;
use http_body::Body as _;
use tokio_util::sync::CancellationToken;

/// Wraps bodies of unknown length so they end when `cut` is cancelled; bodies of known length
/// are left alone (they finish, and keep their `Content-Length`).
#[cfg(test)]
pub(crate) async fn end_at_deadline(
    axum::extract::State(cut): axum::extract::State<CancellationToken>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    cut_at_deadline(next.run(req).await, &cut)
}

/// `res`, with its body ending when `cut` is cancelled if its length is unknown.
pub(crate) fn cut_at_deadline(res: Response, cut: &CancellationToken) -> Response {
    if res.body().size_hint().exact().is_some() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let stream = body
        .into_data_stream()
        .take_until(cut.clone().cancelled_owned());
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Request;
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    fn app(cut: CancellationToken) -> Router {
        let endless = || async {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"tick\n"))
            })
            .then(|chunk| async move {
                tokio::task::yield_now().await;
                chunk
            });
            Body::from_stream(chunks)
        };
        Router::new()
            .route("/stream", get(endless))
            .route("/fixed", get(|| async { "fixed" }))
            .layer(axum::middleware::from_fn_with_state(cut, end_at_deadline))
    }

    #[tokio::test]
    async fn an_endless_stream_ends_when_cut() {
        let cut = CancellationToken::new();
        let res = app(cut.clone())
            .oneshot(
                Request::get("/stream")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
            .await
            .unwrap_or_default();
        let mut body = res.into_body();
        let first = body.frame().await;
        assert!(
            first.is_some_and(|f| f.is_ok()),
            "the stream flows before the cut"
        );
        cut.cancel();
        while let Some(frame) = body.frame().await {
            assert!(frame.is_ok());
        }
    }

    #[tokio::test]
    async fn bodies_of_known_length_are_left_alone() {
        let cut = CancellationToken::new();
        cut.cancel();
        let res = app(cut)
            .oneshot(
                Request::get("/fixed")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
            .await
            .unwrap_or_default();
        assert_eq!(res.body().size_hint().exact(), Some(5));
        let body = res.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(body.ok().as_deref(), Some(&b"fixed"[..]));
    }
}
