//! The dashboard's router as the control plane mounts it: every file with its content type and
//! the security headers, the `/ui` redirect, and problem+json 404s for anything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

async fn get(path: &str) -> (StatusCode, http::HeaderMap, String) {
    let res = flotilla_dashboard::router()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn assert_secure(headers: &http::HeaderMap, path: &str) {
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{path}: {csp}"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
}

#[tokio::test]
async fn the_page_is_served_at_the_mount_path_with_a_strict_policy() {
    let (status, headers, body) = get("/ui/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_secure(&headers, "/ui/");
    assert!(body.contains(r#"<script type="module" src="app.js"></script>"#));
}

#[tokio::test]
async fn the_page_has_no_inline_script_or_style_the_policy_would_block() {
    let (_, _, body) = get("/ui/").await;
    for script in body.split("<script").skip(1) {
        assert!(script.contains("src="), "inline script: <script{script}");
    }
    assert!(
        !body.contains("<style") && !body.contains("style="),
        "{body}"
    );
    assert!(!has_event_handler_attribute(&body), "{body}");
}

/// Whether `html` has an ` on<letters>=` attribute (an inline event handler).
fn has_event_handler_attribute(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        name_end > 0 && rest[name_end..].starts_with('=')
    })
}

#[tokio::test]
async fn assets_are_served_with_their_content_types_and_the_security_headers() {
    for (path, ty) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/page-bus.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
        ("/ui/index.html", "text/html; charset=utf-8"),
    ] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], ty, "{path}");
        assert_secure(&headers, path);
        assert!(!body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn ui_without_the_slash_redirects_to_the_page() {
    let (status, headers, _) = get("/ui").await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/ui/");
    assert_secure(&headers, "/ui");
}

#[tokio::test]
async fn an_unknown_file_is_a_problem_404_naming_it() {
    for path in ["/ui/nope.js", "/ui/pages/../app.js", "/ui/a/b.css"] {
        let (status, headers, body) = get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{path}"
        );
        assert_secure(&headers, path);
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 404);
        let name = path.trim_start_matches("/ui/");
        assert!(problem["detail"].as_str().unwrap().contains(name), "{body}");
    }
}

#[tokio::test]
async fn paths_outside_the_mount_are_not_answered() {
    let (status, _, _) = get("/app.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
