//! A small client of the control plane's HTTP API, for the admin commands.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cli::ApiArgs;
pub(crate) use crate::table::print;

/// Calls the control plane at `--url`, with `--token` as a bearer token when given.
#[derive(Debug)]
pub(crate) struct Api {
    base: String,
    token: Option<String>,
    /// What the base URL is, for messages (`the control plane`, `the service`).
    peer: &'static str,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let (url, token) = crate::locate::control_plane(args).map_err(|e| anyhow!(e))?;
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--url {base:?} must start with http://");
        }
        Ok(Self::at("the control plane", base, token))
    }

    /// A client of another HTTP API (a service's admin routes) at `base` (`http://host:port`).
    pub(crate) fn at(peer: &'static str, base: String, token: Option<String>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            base,
            token,
            peer,
            client,
        }
    }

    /// GETs `path` and returns the JSON body.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// GETs `path` and returns the body as text (`/metrics`).
    pub(crate) async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let bytes = self.open(path, None).await?.collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// POSTs `body` (JSON) to `path`, with `content_type`.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: Value,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some((body, content_type)))
            .await
    }

    /// Sends `body` (JSON, with its content type) to `path` with `method`; the JSON answer
    /// (`null` for an empty one).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Value, &str)>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some((v, ct)) => {
                req = req.header(header::CONTENT_TYPE, ct);
                Bytes::from(serde_json::to_vec(&v)?)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .with_context(|| format!("bad URL {url}"))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow!("cannot reach {} at {}: {e}", self.peer, self.base))?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(describe_failure(status, &value));
        }
        Ok(value)
    }
}

impl Api {
    /// GETs a server-sent-events stream at `path` and calls `on_data` with each event's data,
    /// until the stream ends or `on_data` returns false.
    pub(crate) async fn follow(
        &self,
        path: &str,
        mut on_data: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<()> {
        let mut body = self.open_events(path).await?;
        let mut parser = flotilla_core::sse::SseParser::default();
        // The server sends a keep-alive comment every 15 s: silence this long means the
        // connection is gone without a close (a crashed host, a dropped route).
        let silent =
            || anyhow!("no data or keep-alive for {STREAM_IDLE_LIMIT:?}: the stream is gone");
        while let Some(frame) = tokio::time::timeout(STREAM_IDLE_LIMIT, body.frame())
            .await
            .map_err(|_| silent())?
        {
            let frame = frame.context("reading the event stream")?;
            let Some(chunk) = frame.data_ref() else {
                continue;
            };
            for event in parser.push(chunk)? {
                if event.is_server_error() {
                    bail!("the server ended the stream: {}", event.data);
                }
                if !on_data(&event.data) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// How long an event stream may stay silent (no event, no keep-alive) before it is given up.
pub(crate) const STREAM_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Api {
    /// Opens the server-sent-events stream at `path` (bearer token included) and returns its
    /// body; a refusal is an error quoting the problem's title and detail.
    pub(crate) async fn open_events(&self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        self.open(path, Some("text/event-stream")).await
    }

    /// GETs `path` (with `accept`, and the token when set); the body of a 2xx answer, else
    /// the failure described from the problem body.
    async fn open(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<hyper::body::Incoming> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::get(&url);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("bad URL {url}"))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow!("cannot reach {} at {}: {e}", self.peer, self.base))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res.into_body());
        }
        let bytes = res.into_body().collect().await.map(|c| c.to_bytes());
        let value = bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        bail!(describe_failure(status, &value))
    }
}

fn describe_failure(status: StatusCode, body: &Value) -> String {
    let title = body["title"]
        .as_str()
        .unwrap_or(status.canonical_reason().unwrap_or("error"));
    let said = match body["detail"].as_str() {
        Some(detail) => format!("{title}: {detail} (HTTP {})", status.as_u16()),
        None => format!("{title} (HTTP {})", status.as_u16()),
    };
    // The trace id leads to the failed request's spans and log lines.
    match body["trace_id"].as_str() {
        Some(trace_id) => format!("{said} [trace {trace_id}]"),
        None => said,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_quote_the_problem_title_and_detail() {
        let body = serde_json::json!({"title": "Conflict", "detail": "expected version 3, stream is at 5"});
        let msg = describe_failure(StatusCode::CONFLICT, &body);
        assert_eq!(
            msg,
            "Conflict: expected version 3, stream is at 5 (HTTP 409)"
        );
        assert_eq!(
            describe_failure(StatusCode::BAD_GATEWAY, &Value::Null),
            "Bad Gateway (HTTP 502)"
        );
    }

    #[test]
    fn failures_name_the_problems_trace_id() {
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let body =
            serde_json::json!({"title": "Not Found", "detail": "no saga x", "trace_id": trace_id});
        assert_eq!(
            describe_failure(StatusCode::NOT_FOUND, &body),
            format!("Not Found: no saga x (HTTP 404) [trace {trace_id}]")
        );
    }
}
