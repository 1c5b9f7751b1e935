//! HTTP steps: resolve the service through discovery, render the templated path and body, and
//! send one request carrying the `Idempotency-Key`. The step's timeout is enforced by the
//! driver around this call; retries are the saga's, recorded in the stream, so this sends
//! exactly one request per attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use flotilla_core::{Scheme, ServiceInstance};
use flotilla_discovery::Discovery;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{StepCall, StepError};
use crate::definition::{HttpAction, SagaDefinition};
use crate::template;

/// The header that carries the call's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Results are stored in the saga's stream: a larger answer fails the attempt.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

pub(crate) struct HttpRunner {
    discovery: Arc<dyn Discovery>,
    client: Client<HttpConnector, Full<Bytes>>,
    turn: AtomicU64,
}

impl HttpRunner {
    pub(crate) fn new(discovery: Arc<dyn Discovery>) -> Self {
        Self {
            discovery,
            client: Client::builder(TokioExecutor::new()).build_http(),
            turn: AtomicU64::new(0),
        }
    }

    pub(crate) async fn run(
        &self,
        def: &SagaDefinition,
        h: &HttpAction,
        call: StepCall,
    ) -> Result<Value, StepError> {
        let request = self.request(def, h, &call)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| StepError::retryable(format!("{} unreachable: {e}", h.service)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| StepError::retryable(format!("reading {}'s answer: {e}", h.service)))?
            .to_bytes();
        classify(h.service.as_str(), status, &body)
    }

    fn request(
        &self,
        def: &SagaDefinition,
        h: &HttpAction,
        call: &StepCall,
    ) -> Result<http::Request<Full<Bytes>>, StepError> {
        let names: Vec<String> = def.steps.iter().map(|s| s.name.clone()).collect();
        let ctx = call.template_context(&names);
        let path = template::render_path(&h.path, &ctx).map_err(StepError::permanent)?;
        let body = match &h.body {
            Some(b) => Some(template::render_value(b, &ctx).map_err(StepError::permanent)?),
            None => None,
        };
        let instance = self.pick(h)?;
        let host = if instance.address.contains(':') {
            format!("[{}]", instance.address)
        } else {
            instance.address.clone()
        };
        let key = HeaderValue::from_str(&call.idempotency_key)
            .map_err(|_| StepError::permanent("idempotency key is not a valid header value"))?;
        let mut req = http::Request::builder()
            .method(h.method.clone())
            .uri(format!("http://{host}:{}{path}", instance.port))
            .header(IDEMPOTENCY_KEY, key);
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut request = req
            .body(Full::new(bytes))
            .map_err(|e| StepError::permanent(format!("cannot build the request: {e}")))?;
        if let Some(trace) = &call.trace {
            flotilla_telemetry::headers::inject(request.headers_mut(), trace);
        }
        Ok(request)
    }

    fn pick(&self, h: &HttpAction) -> Result<ServiceInstance, StepError> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let set = self.discovery.snapshot(&h.service);
        let instance = set.pick_weighted(turn).cloned().ok_or_else(|| {
            StepError::retryable(format!("no routable instance of {}", h.service))
        })?;
        if instance.scheme == Scheme::Https {
            return Err(StepError::permanent(format!(
                "{} is served over https, which saga steps cannot call yet",
                h.service
            )));
        }
        Ok(instance)
    }
}

/// 2xx succeeds with the JSON answer (or its text, or null when empty); 408, 429 and 5xx may
/// pass on another attempt; any other status is a refusal no retry will change.
fn classify(service: &str, status: http::StatusCode, body: &Bytes) -> Result<Value, StepError> {
    if status.is_success() {
        return Ok(if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        });
    }
    let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
    let message = format!("{service} answered {status}: {text}");
    let transient = status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS;
    Err(if transient {
        StepError::retryable(message)
    } else {
        StepError::permanent(message)
    })
}
