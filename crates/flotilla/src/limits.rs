//! Request limits the framework does not apply itself.

use axum::extract::Request;

/// Whether the request target is longer than `max` bytes; such a request is answered 414,
/// whose bare status gets its problem+json body from the `observe` step like every framework
/// error.
pub(crate) fn uri_too_long(req: &Request, max: usize) -> bool {
    req.uri().path_and_query().map_or(1, |p| p.as_str().len()) > max
}
