//! Test kit for services built on the SDK: start one on `127.0.0.1:0`, call it, stop it.
//!
//! ```no_run
//! # async fn t() {
//! use flotilla::{Microservice, testing::TestService};
//! let svc = TestService::start(Microservice::builder("users").unwrap()).await;
//! let res = svc.get("/health").await;
//! assert_eq!(res.status, 200);
//! svc.stop().await;
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ServiceConfig;
use crate::error::Error;
use crate::service::{MicroserviceBuilder, ServiceHandle};

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running service under test.
#[derive(Debug)]
pub struct TestService {
    /// The bound address.
    pub addr: SocketAddr,
    /// The service's handle.
    pub handle: ServiceHandle,
    join: JoinHandle<Result<(), Error>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A configuration suited to tests: no drain delay, short deadlines.
pub fn test_config() -> ServiceConfig {
    ServiceConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        drain_delay: Duration::ZERO,
        shutdown_deadline: Duration::from_secs(5),
        ..ServiceConfig::default()
    }
}

impl TestService {
    /// Builds the service with [`test_config`] and starts it on `127.0.0.1:0`.
    pub async fn start(builder: MicroserviceBuilder) -> Self {
        Self::start_with(builder.config(test_config())).await
    }

    /// Starts the service with the configuration already set on `builder` (its `listen`
    /// address is ignored: the service binds `127.0.0.1:0`).
    pub async fn start_with(builder: MicroserviceBuilder) -> Self {
        let service = builder
            .build()
            .expect("test service configuration must be valid");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 must work");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let handle = service.handle();
        let join = tokio::spawn(service.serve(listener));
        while handle.state() == crate::State::Starting {
            tokio::task::yield_now().await;
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            handle,
            join,
            client,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `req` (its URI is a path) and reads the whole response.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> TestResponse {
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = self.url(&path).parse().expect("a test URL must parse");
        let res = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .expect("request must be sent");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body must be read").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        let req = Request::get(path)
            .body(Full::default())
            .expect("a GET request must build");
        self.send(req).await
    }

    /// A request with a method, path, headers and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(
            req.body(Full::new(body.into()))
                .expect("a test request must build"),
        )
        .await
    }

    /// Triggers graceful shutdown and waits for the service to stop.
    pub async fn stop(self) -> Result<(), Error> {
        self.handle.shutdown();
        self.join.await.expect("the service task must not panic")
    }
}
