//! The web dashboard of the control plane, served at `/ui/`.
//!
//! This crate owns the dashboard's pages (one HTML shell, plain ES modules and a style sheet,
//! embedded in the binary) and the router that serves them with strict security headers. It
//! owns no data: the pages read the control plane's own HTTP APIs from the browser — the same
//! ones the CLI uses — so the dashboard can show nothing an API does not, and needs no access
//! to any component. It depends on no other component or backend; the binary mounts
//! [`router`] next to the APIs (docs/dashboard.md).

mod assets;
mod headers;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the dashboard is mounted.
pub const PATH: &str = "/ui/";

/// The dashboard's routes: `/ui` redirects to `/ui/`, `/ui/` is the page, `/ui/<file>` its
/// assets; any other `/ui/...` path is a problem+json 404 naming it.
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::temporary(PATH) }))
        .route("/ui/", get(|| async { asset_response("index.html") }))
        .route(
            "/ui/{*file}",
            get(|Path(file): Path<String>| async move { asset_response(&file) }),
        )
        .layer(axum::middleware::map_response(headers::secure))
}

fn asset_response(name: &str) -> Response {
    match assets::find(name) {
        Some(asset) => asset.into_response(),
        None => headers::not_found(name),
    }
}
