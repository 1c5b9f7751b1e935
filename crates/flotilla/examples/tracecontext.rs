//! The W3C trace-context test service (github.com/w3c/trace-context, `test/`): `POST /test`
//! takes a JSON list of `{"url": ..., "arguments": [...]}` and, for each, POSTs `arguments` to
//! `url` through `ServiceClient`, passing on the request's trace context. The harness then
//! checks what arrived. Run it with `scripts/tracecontext.sh`.
//!
//! `tracecontext [ADDR]` listens on ADDR (default `127.0.0.1:5000`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use flotilla::client::ServiceClient;
use flotilla::core::{ServiceInstance, ServiceName};
use flotilla::{Microservice, ServiceConfig};
use flotilla_discovery::StaticDiscovery;
use serde::Deserialize;

/// One callback the harness asks for.
#[derive(Debug, Deserialize)]
struct Call {
    url: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// The harness names callbacks by URL; `ServiceClient` calls services by name. Each
/// `host:port` becomes a service of its own in a static discovery source.
#[derive(Clone)]
struct Callbacks {
    discovery: Arc<StaticDiscovery>,
    client: ServiceClient,
}

impl Callbacks {
    fn new() -> Self {
        let discovery = Arc::new(StaticDiscovery::new());
        let client = ServiceClient::new(discovery.clone());
        Self { discovery, client }
    }

    /// The service standing for `url`'s host and port, and the path to call on it.
    fn resolve(&self, url: &str) -> Result<(ServiceName, String), String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("url {url:?}: {e}"))?;
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(format!("url {url:?} needs a host and a port"));
        };
        let name = format!("cb-{}-{port}", host.replace(['.', ':'], "-"));
        let service = ServiceName::new(&name).map_err(|e| format!("url {url:?}: {e}"))?;
        let instance = ServiceInstance::new(service.clone(), host.to_owned(), port);
        self.discovery.set_passing(&service, vec![instance]);
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok((service, path))
    }

    async fn call(&self, incoming: &HeaderMap, call: &Call) -> Result<(), String> {
        let (service, path) = self.resolve(&call.url)?;
        self.client
            .service(service.as_str())
            .post(&path)
            .json(&call.arguments)
            .propagate(incoming)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("callback to {}: {e}", call.url))
    }
}

async fn test(
    axum::extract::State(callbacks): axum::extract::State<Callbacks>,
    headers: HeaderMap,
    Json(calls): Json<Vec<Call>>,
) -> Result<&'static str, (StatusCode, String)> {
    for call in &calls {
        callbacks
            .call(&headers, call)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
    }
    Ok("done")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".into())
        .parse()?;
    flotilla::telemetry::init(flotilla::config::LogFormat::Human, "warn");
    let routes = Router::new()
        .route("/test", post(test))
        .with_state(Callbacks::new());
    let config = ServiceConfig {
        listen: addr,
        ..ServiceConfig::default()
    };
    Microservice::builder("tracecontext")?
        .config(config)
        .routes(routes)
        .build()?
        .run()
        .await?;
    Ok(())
}
