//! RFC 9457 problem details, the one error format of every Flotilla HTTP API.
//!
//! Handlers return [`Problem`]; the [`Json`] extractor turns body rejections into problem
//! responses (415 for a wrong content type, 400 for malformed JSON, 422 with field errors for
//! well-formed JSON of the wrong shape); and the service's middleware rewrites any other error
//! response the framework produces (404, 405, 413, timeouts) into the same format. Internal
//! details never reach a client: a 500 says only that something failed, with the request id to
//! quote.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request, for 422 responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON-pointer-like path of the field (`/items/0/sku`), or the field name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI identifying the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// An explanation specific to this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this occurrence concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, to quote when reporting the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C trace id of the request (32 hex digits), to paste into a tracing UI.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
    /// Field errors of a 422.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with the standard reason phrase of `status` as title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            type_uri: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            trace_id: None,
            errors: Vec::new(),
        }
    }

    /// Adds the occurrence-specific explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the problem type URI and title.
    pub fn typed(mut self, type_uri: impl Into<String>, title: impl Into<String>) -> Self {
        self.type_uri = type_uri.into();
        self.title = title.into();
        self
    }

    /// Adds a field error (and should be used with 422).
    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// 400 Bad Request with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).detail(detail)
    }

    /// 404 Not Found with a detail.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).detail(detail)
    }

    /// 500 with no internal detail: log the cause, send only this.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).detail(
            "the server failed to handle the request; quote the request id when reporting it",
        )
    }

    /// A problem for a classified error: its status, and its message when the caller is the
    /// one to act on it (4xx). A 5xx error's text describes this service's dependencies
    /// (addresses, engines, queries), so it is logged with the request id and the caller
    /// gets a generic detail instead.
    pub fn from_error<E>(err: &E) -> Self
    where
        E: flotilla_core::error::Classify + std::fmt::Display,
    {
        use flotilla_core::ErrorKind;
        let class = err.class();
        let status = StatusCode::from_u16(class.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if !status.is_server_error() {
            return Self::new(status).detail(err.to_string());
        }
        tracing::error!(error = %err, kind = ?class.kind, "request failed");
        let detail = match class.kind {
            ErrorKind::Unavailable => "a service this one depends on is unavailable; retry later",
            ErrorKind::Timeout => "a service this one depends on did not answer in time",
            ErrorKind::Upstream => "a service this one depends on failed",
            _ => return Self::internal(),
        };
        Self::new(status).detail(detail)
    }

    /// The status as an `http` status code.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let ctx = crate::middleware::RequestContext::current();
        if let Some(ctx) = &ctx {
            self.request_id
                .get_or_insert_with(|| ctx.request_id.to_string());
            self.trace_id
                .get_or_insert_with(|| ctx.trace.trace_id_hex());
            self.instance.get_or_insert_with(|| ctx.path.clone());
        }
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if ctx.is_some() {
            res.extensions_mut().insert(crate::problem_ids::Named);
        }
        res
    }
}

/// A JSON body extractor whose rejections are problem+json: 415 without a JSON content type,
/// 400 for malformed JSON, 413 over the body limit, 422 with the offending field otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(rejection_problem(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn rejection_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text =
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
            let (field, message) = split_serde_path(&text);
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .detail("the request body does not have the expected shape")
                .field(field, message)
        }
        JsonRejection::JsonSyntaxError(_) => {
            Problem::bad_request("the request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => {
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .detail("expected a body with `Content-Type: application/json`")
        }
        other => {
            let status = other.status();
            Problem::new(status).detail(other.body_text())
        }
    }
}

/// serde_path_to_error-style messages read `path.to.field: message`; plain serde messages
/// carry no path. Split so clients can highlight the field.
fn split_serde_path(text: &str) -> (String, String) {
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && !path.is_empty() => (path.into(), msg.into()),
        _ => ("(body)".into(), text.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_serialize_with_rfc_9457_member_names() {
        let p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .detail("bad")
            .field("name", "missing");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["field"], "name");
        assert!(v.get("instance").is_none());
    }

    #[test]
    fn internal_problems_carry_no_internal_detail() {
        #[derive(Debug, thiserror::Error)]
        #[error("db password is hunter2")]
        struct Secret;
        impl flotilla_core::error::Classify for Secret {
            fn class(&self) -> flotilla_core::ErrorClass {
                flotilla_core::ErrorClass::of(flotilla_core::ErrorKind::Internal)
            }
        }
        let p = Problem::from_error(&Secret);
        assert_eq!(p.status, 500);
        assert!(!p.detail.unwrap_or_default().contains("hunter2"));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("postgres at 10.1.2.3:5432 refused: {0:?}")]
    struct Dependency(flotilla_core::ErrorKind);

    impl flotilla_core::error::Classify for Dependency {
        fn class(&self) -> flotilla_core::ErrorClass {
            flotilla_core::ErrorClass::of(self.0)
        }
    }

    #[test]
    fn dependency_failures_keep_their_status_but_not_their_text() {
        use flotilla_core::ErrorKind;
        for (kind, status) in [
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Upstream, 502),
        ] {
            let p = Problem::from_error(&Dependency(kind));
            assert_eq!(p.status, status);
            let detail = p.detail.unwrap_or_default();
            assert!(!detail.contains("10.1.2.3"), "{detail}");
            assert!(detail.contains("depends on"), "{detail}");
        }
        let p = Problem::from_error(&Dependency(ErrorKind::Conflict));
        assert_eq!(p.status, 409);
        assert!(
            p.detail.unwrap_or_default().contains("refused"),
            "4xx keep their text"
        );
    }

    #[test]
    fn serde_paths_split_into_field_and_message() {
        assert_eq!(
            split_serde_path("items[0].sku: invalid type").0,
            "items[0].sku"
        );
        assert_eq!(
            split_serde_path("missing field `name` at line 1").0,
            "(body)"
        );
    }
}
