//! Request limits the framework does not apply itself.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;

/// Answers 414 to a request target longer than `max` bytes. The bare status is given its
/// problem+json body by the outer `observe` layer, like every framework error.
pub(crate) async fn uri_length(State(max): State<usize>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    if target > max {
        return StatusCode::URI_TOO_LONG.into_response();
    }
    next.run(req).await
}
