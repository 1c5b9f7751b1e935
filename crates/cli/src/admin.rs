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

/// Calls the control plane at `--url`, with `--token` as a bearer token when given.
#[derive(Debug)]
pub(crate) struct Api {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--url {base:?} must start with http://");
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            token: args.token.clone(),
            client,
        })
    }

    /// GETs `path` and returns the JSON body.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
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

    async fn call(
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
            .map_err(|e| anyhow!("cannot reach the control plane at {}: {e}", self.base))?;
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
        let url = format!("{}{}", self.base, path);
        let req = Request::get(&url)
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .with_context(|| format!("bad URL {url}"))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow!("cannot reach the control plane at {}: {e}", self.base))?;
        if !res.status().is_success() {
            bail!(describe_failure(res.status(), &Value::Null));
        }
        let mut body = res.into_body();
        let mut pending = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the event stream")?;
            let Some(chunk) = frame.data_ref() else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:")
                    && !on_data(data.trim_start())
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn describe_failure(status: StatusCode, body: &Value) -> String {
    let title = body["title"]
        .as_str()
        .unwrap_or(status.canonical_reason().unwrap_or("error"));
    match body["detail"].as_str() {
        Some(detail) => format!("{title}: {detail} (HTTP {})", status.as_u16()),
        None => format!("{title} (HTTP {})", status.as_u16()),
    }
}

/// Prints `value` as JSON, or as a table when it is (or holds under `key`) an array of objects.
pub(crate) fn print(value: &Value, key: Option<&str>, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let rows = key.and_then(|k| value.get(k)).unwrap_or(value);
    match rows.as_array() {
        Some(rows) if rows.iter().all(Value::is_object) => print_table(rows),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Value]) {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        println!("(none)");
        return;
    };
    let columns: Vec<&String> = first
        .iter()
        .filter(|(_, v)| !v.is_object())
        .map(|(k, _)| k)
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[c.as_str()])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
                .min(60)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        line(row);
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
}
