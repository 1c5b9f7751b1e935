//! [`RegistryClient`]: the registry's HTTP API as async calls, and the local discovery cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::{Discovery, Endpoint, ServiceSet};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use flotilla_dial::Connector;

/// Longest registry answer read into memory. A catalog of 10,000 instances is a few MiB; the
/// cap stops a wrong or hostile endpoint from exhausting the service's memory.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:4400`, or several registry
    /// replicas separated by commas (`http://r1:4400,http://r2:4400`): calls go to one replica
    /// and move to the next when it cannot be reached.
    pub url: String,
    /// Bearer token for writes, when the registry requires one.
    pub token: Option<String>,
    /// How long each blocking query waits for a change. Default 30 s.
    pub wait: Duration,
    /// Deadline of a non-blocking call. Default 5 s.
    pub timeout: Duration,
    /// First retry delay while the registry is down; doubles up to `max_backoff`. Default 200 ms.
    pub min_backoff: Duration,
    /// Longest retry delay. Default 10 s.
    pub max_backoff: Duration,
}

impl ClientOptions {
    /// Defaults for a registry at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            wait: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) options: ClientOptions,
    /// The replicas' base URLs, in the configured order.
    bases: Vec<String>,
    /// Index into `bases` of the replica calls go to first.
    current: AtomicUsize,
    http: Client<Connector, Full<Bytes>>,
    cache: Mutex<HashMap<ServiceName, watch::Sender<ServiceSet>>>,
    runtime: tokio::runtime::Handle,
    pub(crate) shutdown: CancellationToken,
    turn: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A client of the registry's HTTP API and a [`Discovery`] source. Cheap to clone; followers
/// stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

/// One service in the registry's service list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: ServiceName,
    /// The service's revision.
    pub revision: u64,
    /// Registered instances, whatever their status.
    pub instances: usize,
    /// Instances passing or warning.
    pub routable: usize,
    /// Union of the instances' tags.
    pub tags: Vec<String>,
}

/// One page of a blocking query.
#[derive(Debug, Deserialize)]
pub(crate) struct InstancesPage {
    pub(crate) revision: u64,
    pub(crate) instances: Vec<Endpoint>,
}

impl RegistryClient {
    /// A client for `options.url`. Must be called inside a Tokio runtime: followers run there.
    pub fn new(options: ClientOptions) -> Result<Self, Error> {
        Self::with_connector(options, Connector::Tcp(HttpConnector::new()))
    }

    /// A client that reaches the registry through `dialer` instead of TCP: the same client,
    /// over a simulated network in tests. The URL's host and port are handed to `dialer`.
    #[cfg(feature = "dial")]
    pub fn with_dialer(options: ClientOptions, dialer: crate::Dialer) -> Result<Self, Error> {
        Self::with_connector(options, Connector::Dial(dialer))
    }

    fn with_connector(options: ClientOptions, connector: Connector) -> Result<Self, Error> {
        let bases = parse_bases(&options.url)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Options("RegistryClient::new must run inside a Tokio runtime".into())
        })?;
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let inner = Inner {
            options,
            bases,
            current: AtomicUsize::new(0),
            http,
            cache: Mutex::default(),
            runtime,
            shutdown: CancellationToken::new(),
            turn: AtomicU64::new(0),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Sends one request; answers the body of a 2xx, or the error the registry gave. With
    /// several replicas, a replica that cannot be reached hands the call to the next one
    /// (within the same `deadline`), and later calls start there.
    pub(crate) async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        let body = Bytes::from(body.unwrap_or_default());
        let until = tokio::time::Instant::now() + deadline;
        let bases = &self.inner.bases;
        let first = self.inner.current.load(Ordering::Relaxed) % bases.len();
        let mut last_error = None;
        for turn in 0..bases.len() {
            let at = (first + turn) % bases.len();
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self
                .call_one(&bases[at], method.clone(), path, body.clone(), left)
                .await
            {
                Err(Error::Unreachable(why)) => {
                    // Move on only if no other call has moved already.
                    let next = (at + 1) % bases.len();
                    let _ = self.inner.current.compare_exchange(
                        at,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    last_error = Some(Error::Unreachable(why));
                }
                answered => return answered,
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Unreachable("no registry configured".into())))
    }

    async fn call_one(
        &self,
        base: &str,
        method: http::Method,
        path: &str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, Error> {
        let has_body = !body.is_empty();
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        if let Some(token) = &self.inner.options.token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if has_body {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Error::Options(format!("cannot build request for {path}: {e}")))?;
        let exchange = async {
            let response = self
                .inner
                .http
                .request(request)
                .await
                .map_err(|e| Error::Unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Error::Decode(format!("answer longer than {MAX_RESPONSE_BYTES} bytes"))
                    } else {
                        Error::Unreachable(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| Error::Unreachable(format!("no answer within {deadline:?}")))??;
        if status.is_success() {
            return Ok(bytes);
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        Err(Error::Status {
            status: status.as_u16(),
            detail,
        })
    }

    /// Every instance of `service`, whatever its status, with the service revision; with an
    /// `index`, waits up to `wait` for a revision other than `index` (0 waits for a service that
    /// does not exist yet).
    pub async fn instances(
        &self,
        service: &ServiceName,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<(u64, Vec<Endpoint>), Error> {
        let wait_s = wait.as_secs().max(1);
        let blocking = index.map_or(String::new(), |i| format!("&index={i}&wait={wait_s}s"));
        let path = format!("/api/v1/registry/services/{service}?status=any{blocking}");
        let deadline = Duration::from_secs(wait_s) + self.inner.options.timeout;
        let bytes = self.call(http::Method::GET, &path, None, deadline).await?;
        let page: InstancesPage =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((page.revision, page.instances))
    }

    /// The base URL of a routable instance of `service` from the local cache: the instance
    /// `id` when given, otherwise the next one by weighted round robin (the seed's
    /// `getServiceUrl`). `None` when nothing routable is known yet.
    pub fn service_url(&self, service: &ServiceName, id: Option<&str>) -> Option<String> {
        let rx = self.watch(service);
        let set = rx.borrow();
        let instance = match id {
            Some(id) => set.routable_by_id(id),
            None => set.pick_weighted(self.inner.turn.fetch_add(1, Ordering::Relaxed)),
        };
        instance.map(ServiceInstance::base_url)
    }

    /// Every service the registry knows, by name (for `flotilla services ls`).
    pub async fn services(&self) -> Result<Vec<ServiceSummary>, Error> {
        let timeout = self.inner.options.timeout;
        let bytes = self
            .call(
                http::Method::GET,
                "/api/v1/registry/services",
                None,
                timeout,
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    fn sender(&self, service: &ServiceName) -> (watch::Sender<ServiceSet>, bool) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = cache.get(service) {
            return (tx.clone(), false);
        }
        let tx = watch::channel(ServiceSet::default()).0;
        cache.insert(service.clone(), tx.clone());
        (tx, true)
    }
}

/// The base URLs of `url`: one, or several separated by commas, each `http://host:port`.
fn parse_bases(url: &str) -> Result<Vec<String>, Error> {
    url.split(',')
        .map(str::trim)
        .map(|one| {
            let uri: http::Uri = one
                .parse()
                .map_err(|e| Error::Options(format!("url {one:?}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(Error::Options(format!(
                    "url {one:?} must be http://host:port"
                )));
            }
            Ok(one.trim_end_matches('/').to_owned())
        })
        .collect()
}

impl Discovery for RegistryClient {
    fn watch(&self, service: &ServiceName) -> watch::Receiver<ServiceSet> {
        let (tx, new) = self.sender(service);
        let rx = tx.subscribe();
        if new {
            let follower = crate::follower::follow(
                Arc::downgrade(&self.inner),
                self.inner.shutdown.clone(),
                service.clone(),
                tx,
            );
            self.inner.runtime.spawn(follower);
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_plain_http_base_urls_are_accepted() {
        for bad in ["localhost:4400", "https://r:4400", "not a url"] {
            let e = RegistryClient::new(ClientOptions::new(bad)).unwrap_err();
            assert!(matches!(e, Error::Options(_)), "{bad}: {e}");
        }
        assert!(RegistryClient::new(ClientOptions::new("http://127.0.0.1:4400/")).is_ok());
    }

    #[test]
    fn several_replicas_are_separated_by_commas_and_each_is_checked() {
        let bases = parse_bases("http://r1:4400/, http://r2:4400").unwrap();
        assert_eq!(bases, ["http://r1:4400", "http://r2:4400"]);
        let e = parse_bases("http://r1:4400,r2:4400").unwrap_err();
        assert!(e.to_string().contains("\"r2:4400\""), "{e}");
        assert!(
            parse_bases("http://r1:4400,").is_err(),
            "an empty entry is refused"
        );
    }

    #[test]
    fn a_client_needs_a_runtime() {
        let e = RegistryClient::new(ClientOptions::new("http://127.0.0.1:4400")).unwrap_err();
        assert!(e.to_string().contains("Tokio runtime"), "{e}");
    }
}
