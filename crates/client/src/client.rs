//! The client: one per process, cheap to clone; holds the policies and the per-service stacks
//! (each with its connection pool).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::ServiceName;
use flotilla_discovery::Discovery;
use flotilla_resilience::BoxError;
use flotilla_resilience::balance::Balancer;
use flotilla_resilience::metrics::Metrics;
use flotilla_resilience::policy::{PolicySet, Resilience};
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::util::BoxCloneSyncService;

use crate::endpoint::{Endpoint, Settings};
use crate::pool::Pool;
use crate::request::RequestBuilder;

pub(crate) type Stack = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// Calls other services by name: discovery, load balancing and the policy stack of
/// `flotilla-resilience`, over pooled HTTP/1 connections.
///
/// ```no_run
/// # async fn demo(discovery: std::sync::Arc<dyn flotilla_discovery::Discovery>) -> Result<(), flotilla_client::Error> {
/// let client = flotilla_client::ServiceClient::new(discovery);
/// let user: serde_json::Value = client.service("users").get("/users/42").send().await?.json()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    discovery: Arc<dyn Discovery>,
    policies: PolicySet,
    resilience: Resilience,
    upstreams: Mutex<HashMap<ServiceName, Upstream>>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    max_response_bytes: usize,
    discovery_wait: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) stack: Stack,
}

/// Builds a [`ServiceClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    discovery: Arc<dyn Discovery>,
    policies: PolicySet,
    metrics: Option<Metrics>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    max_response_bytes: usize,
    discovery_wait: Duration,
}

impl ClientBuilder {
    /// Policies per target service (default: the built-in defaults for every service).
    pub fn policies(mut self, policies: PolicySet) -> Self {
        self.policies = policies;
        self
    }

    /// Registers breaker, retry, rejection and ejection metrics into `registry` (the one the
    /// service serves at `/metrics`).
    pub fn metrics(mut self, registry: &mut prometheus_client::registry::Registry) -> Self {
        self.metrics = Some(Metrics::registered(registry));
        self
    }

    /// Reports into metrics already registered elsewhere (shared with a gateway, say).
    pub fn shared_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool_idle_timeout = idle;
        self
    }

    /// Idle connections kept per instance (default 32).
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Longest response body the client reads into memory (default 16 MiB); a longer one
    /// fails the call with [`crate::Error::ResponseTooLarge`], so a misbehaving upstream
    /// cannot exhaust the caller's memory.
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// How long a call waits for discovery's first answer about a service it has not heard of
    /// yet (default 2 s). A registry-fed cache starts empty when the process starts; without
    /// this wait the first call would fail with "no healthy instance" while the instances are
    /// there. A known empty set fails at once, whatever this is.
    pub fn discovery_wait(mut self, wait: Duration) -> Self {
        self.discovery_wait = wait;
        self
    }

    /// The client.
    pub fn build(self) -> ServiceClient {
        ServiceClient {
            inner: Arc::new(Inner {
                discovery: self.discovery,
                policies: self.policies,
                resilience: Resilience::new(self.metrics),
                upstreams: Mutex::default(),
                pool_idle_timeout: self.pool_idle_timeout,
                pool_max_idle_per_host: self.pool_max_idle_per_host,
                max_response_bytes: self.max_response_bytes,
                discovery_wait: self.discovery_wait,
            }),
        }
    }
}

impl ServiceClient {
    /// A client with built-in default policies and no metrics.
    pub fn new(discovery: Arc<dyn Discovery>) -> Self {
        Self::builder(discovery).build()
    }

    /// A builder, to set policies, metrics and pool settings.
    pub fn builder(discovery: Arc<dyn Discovery>) -> ClientBuilder {
        ClientBuilder {
            discovery,
            policies: PolicySet::default(),
            metrics: None,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            max_response_bytes: 16 * 1024 * 1024,
            discovery_wait: Duration::from_secs(2),
        }
    }

    /// Calls to `service`. An invalid name fails when the request is sent.
    pub fn service(&self, service: &str) -> ServiceRef {
        ServiceRef {
            client: self.clone(),
            service: ServiceName::new(service).map_err(|e| e.to_string()),
        }
    }

    /// The shared resilience state (breakers, to subscribe to their transitions).
    pub fn resilience(&self) -> &Resilience {
        &self.inner.resilience
    }

    pub(crate) fn upstream(&self, service: &ServiceName) -> Upstream {
        let mut map = self
            .inner
            .upstreams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(service.clone())
            .or_insert_with(|| self.build_upstream(service))
            .clone()
    }

    fn build_upstream(&self, service: &ServiceName) -> Upstream {
        let inner = &self.inner;
        let policy = inner.policies.resolve(service.as_str());
        let metrics = inner.resilience.metrics().cloned();
        let endpoint = Endpoint::new(Settings {
            service: service.as_str().into(),
            pool: Pool::new(inner.pool_idle_timeout, inner.pool_max_idle_per_host),
            balancer: Arc::new(Balancer::new(
                service.as_str(),
                policy.balance.clone(),
                metrics,
            )),
            instances: inner.discovery.watch(service),
            hash_header: policy.hash_header.clone(),
            max_response_bytes: inner.max_response_bytes,
            discovery_wait: inner.discovery_wait,
        });
        let stack = inner.resilience.stack(service.as_str(), &policy, endpoint);
        Upstream {
            stack: BoxCloneSyncService::new(stack),
        }
    }
}

/// Calls to one service; build requests from it.
#[derive(Debug, Clone)]
pub struct ServiceRef {
    client: ServiceClient,
    service: Result<ServiceName, String>,
}

impl ServiceRef {
    /// A request with any method.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(self.client.clone(), self.service.clone(), method, path)
    }

    /// A GET request.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A POST request (not retried unless it gets an idempotency key).
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT request.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH request (not retried unless it gets an idempotency key).
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE request.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }
}
