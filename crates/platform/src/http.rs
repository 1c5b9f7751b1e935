//! One pooled HTTP/1.1 keep-alive client to the control plane, shared by the bus and the
//! event store: the base URL, the bearer token, deadlines, bounded answers and problem+json
//! decoding live here once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use flotilla_dial::Connector;

/// Longest answer read into memory (a page of 1,000 events of 1 MiB each is the worst the
/// control plane sends); a wrong or hostile endpoint cannot exhaust the service's memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// How to reach the control plane.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Base URL, e.g. `http://127.0.0.1:4400`.
    pub url: String,
    /// The control plane's `registry.token`, sent as `Authorization: Bearer` on writes.
    pub token: Option<String>,
    /// Deadline of one call that is not a long poll or a stream. Default 10 s.
    pub timeout: Duration,
    /// Idle keep-alive connections kept per host. Default 32.
    pub max_idle_connections: usize,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_idle_connections", &self.max_idle_connections)
            .finish()
    }
}

impl ConnectOptions {
    /// Defaults for a control plane at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            timeout: Duration::from_secs(10),
            max_idle_connections: 32,
        }
    }

    /// Sends `token` on writes.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// An RFC 9457 problem the control plane answered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Problem {
    /// The problem type URI, if given.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Short summary.
    #[serde(default)]
    pub title: Option<String>,
    /// What went wrong with this request.
    #[serde(default)]
    pub detail: Option<String>,
    /// Extension members (RFC 9457 section 3.2): the data an API adds so a client can rebuild
    /// a contract's error, such as the event store's `code` and `actual_version`.
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// Why a call to the control plane failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The options are unusable (a bad URL); the message names the value.
    #[error("platform connection: {0}")]
    Options(String),
    /// No connection, or it broke before a whole answer arrived: the outcome is unknown.
    #[error("control plane at {url} unreachable: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What the connection said.
        reason: String,
    },
    /// No whole answer within the deadline: the outcome is unknown.
    #[error("control plane at {url} sent no answer within {after:?}")]
    Timeout {
        /// The base URL.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The token was missing or wrong (401/403). Not worth retrying.
    #[error(
        "the control plane at {url} refused the token ({status}): set platform.token to its registry.token"
    )]
    Unauthorized {
        /// The base URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// Any other non-2xx answer, with the problem it carried.
    #[error("control plane answered {status}: {}", problem.detail.as_deref().or(problem.title.as_deref()).unwrap_or("no detail"))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The problem+json body (empty when there was none).
        problem: Problem,
        /// `Retry-After` in seconds, when sent (503 of a saturated API).
        retry_after: Option<u64>,
    },
    /// The answer was not what the API documents.
    #[error("control plane answer not understood: {0}")]
    Decode(String),
}

impl CallError {
    /// The outcome is unknown or the server is briefly unavailable: the same request (with the
    /// same ids) may be sent again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The HTTP status, if the control plane answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem's detail (or title), for mapping onto a contract's error.
    pub fn detail(&self) -> String {
        match self {
            Self::Status { problem, .. } => problem
                .detail
                .clone()
                .or_else(|| problem.title.clone())
                .unwrap_or_default(),
            other => other.to_string(),
        }
    }
}

/// A request to send: method, path with query, optional JSON body, extra headers.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) body: Option<(&'static str, Bytes)>,
    pub(crate) headers: HeaderMap,
    /// Overrides the default deadline (long polls wait longer than calls).
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            body: None,
            headers: HeaderMap::new(),
            timeout: None,
        }
    }

    pub(crate) fn get(path: &'a str) -> Self {
        Self::new(Method::GET, path)
    }

    /// A JSON body.
    pub(crate) fn json(mut self, value: &impl serde::Serialize) -> Self {
        let bytes = serde_json::to_vec(value).expect("request bodies are plain JSON values");
        self.body = Some(("application/json", Bytes::from(bytes)));
        self
    }

    /// A body of another content type.
    pub(crate) fn body(mut self, content_type: &'static str, bytes: Bytes) -> Self {
        self.body = Some((content_type, bytes));
        self
    }

    pub(crate) fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A 2xx answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| CallError::Decode(e.to_string()))
    }
}

struct Inner {
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
    http: Client<Connector, Full<Bytes>>,
}

/// A connection pool to one control plane. Cheap to clone; the bus and the store share one.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("url", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A client for `options.url` (`http://host:port`). Connects lazily: a control plane that
    /// is down now is reached when it comes up.
    pub fn new(options: ConnectOptions) -> Result<Self, CallError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.timeout));
        Self::with_connector(options, Connector::Tcp(connector))
    }

    /// A client that reaches the control plane through `dialer` instead of TCP: the same
    /// client, over a simulated network in tests. The URL's host and port go to `dialer`.
    #[cfg(feature = "dial")]
    pub fn with_dialer(options: ConnectOptions, dialer: crate::Dialer) -> Result<Self, CallError> {
        Self::with_connector(options, Connector::Dial(dialer))
    }

    fn with_connector(options: ConnectOptions, connector: Connector) -> Result<Self, CallError> {
        let uri: http::Uri = options
            .url
            .parse()
            .map_err(|e| CallError::Options(format!("platform.url {:?}: {e}", options.url)))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(CallError::Options(format!(
                "platform.url {:?} must be http://host:port",
                options.url
            )));
        }
        let token =
            match &options.token {
                Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    CallError::Options("platform.token is not a valid header".into())
                })?),
                None => None,
            };
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(options.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                base: options.url.trim_end_matches('/').to_owned(),
                token,
                timeout: options.timeout,
                http,
            }),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// The default deadline of a call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks the control plane's `/health`: answers once it serves.
    pub async fn ping(&self) -> Result<(), CallError> {
        self.call(Call::get("/health")).await.map(drop)
    }

    fn request(&self, call: Call<'_>) -> Result<http::Request<Full<Bytes>>, CallError> {
        let mut builder = http::Request::builder()
            .method(call.method)
            .uri(format!("{}{}", self.inner.base, call.path));
        if let Some(token) = &self.inner.token {
            builder = builder.header(AUTHORIZATION, token.clone());
        }
        let body = match call.body {
            Some((content_type, bytes)) => {
                builder = builder.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let mut request = builder
            .body(Full::new(body))
            .map_err(|e| CallError::Options(format!("request to {}: {e}", call.path)))?;
        request.headers_mut().extend(call.headers);
        Ok(request)
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> CallError {
        CallError::Unreachable {
            url: self.inner.base.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends one call and reads the whole answer within its deadline; non-2xx answers become
    /// [`CallError`]s carrying their problem.
    pub(crate) async fn call(&self, call: Call<'_>) -> Result<Answer, CallError> {
        let deadline = call.timeout.unwrap_or(self.inner.timeout);
        let request = self.request(call)?;
        let exchange = async {
            let response = self
                .inner
                .http
                .request(request)
                .await
                .map_err(|e| self.unreachable(error_chain(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::Decode(format!("answer longer than {MAX_ANSWER_BYTES} bytes"))
                    } else {
                        self.unreachable(e)
                    }
                })?
                .to_bytes();
            Ok::<_, CallError>((status, headers, body))
        };
        let (status, headers, body) =
            tokio::time::timeout(deadline, exchange)
                .await
                .map_err(|_| CallError::Timeout {
                    url: self.inner.base.clone(),
                    after: deadline,
                })??;
        if status.is_success() {
            return Ok(Answer { body });
        }
        Err(self.failure(status, &headers, &body))
    }

    /// Opens a streaming answer (SSE): waits for the status and headers within the deadline,
    /// then hands the body over unread.
    pub(crate) async fn open(&self, call: Call<'_>) -> Result<http::Response<Incoming>, CallError> {
        let deadline = call.timeout.unwrap_or(self.inner.timeout);
        let request = self.request(call)?;
        let response = tokio::time::timeout(deadline, self.inner.http.request(request))
            .await
            .map_err(|_| CallError::Timeout {
                url: self.inner.base.clone(),
                after: deadline,
            })?
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(
            deadline,
            Limited::new(response.into_body(), 64 * 1024).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
        Err(self.failure(status, &headers, &body))
    }

    fn failure(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CallError {
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return CallError::Unauthorized {
                url: self.inner.base.clone(),
                status: status.as_u16(),
            };
        }
        let problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| Problem {
            detail: Some(String::from_utf8_lossy(body).chars().take(200).collect()),
            ..Problem::default()
        });
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        CallError::Status {
            status: status.as_u16(),
            problem,
            retry_after,
        }
    }
}

/// hyper-util's errors say "client error (Connect)"; the cause says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// Percent-encodes one path segment (stream ids and group names may hold `/`-free text that
/// still needs escaping, such as `$` or spaces).
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
