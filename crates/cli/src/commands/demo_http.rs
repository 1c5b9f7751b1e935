//! The demo's HTTP client: one pooled keep-alive client, answers as status plus JSON, so the
//! seeding and the load generator can tell a 409 or a 402 from a transport failure.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A cheap-to-clone client with a connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl Http {
    /// A client sending `token` as a bearer token on writes.
    pub(crate) fn new(token: Option<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { client, token }
    }

    pub(crate) async fn get(&self, url: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send(Method::GET, url, None).await
    }

    pub(crate) async fn post(&self, url: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.send(Method::POST, url, Some(body)).await
    }

    /// Sends one request; the status and the JSON answer (`null` when it is not JSON). A
    /// transport failure is the error, naming the URL.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        if let (Some(token), false) = (&self.token, method == Method::GET) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes))?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}
