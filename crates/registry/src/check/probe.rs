//! Running one probe: an HTTP request or a TCP connect, under the check's own deadline.

use std::time::Duration;

use bytes::Bytes;
use flotilla_core::{Scheme, ServiceInstance};
use flotilla_discovery::HealthStatus;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{CheckKind, CheckSpec, Outcome};

/// The HTTP client every HTTP check shares (one connection pool).
pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A client for health checks: small idle pool, no keep-alive surprises across instances.
pub(crate) fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// Checks that `url` is an absolute `http://` URL (HTTPS checks are not supported yet).
pub(crate) fn parse_http_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("url {url:?} is not a valid URL ({e})"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!("url {url:?} must be an absolute http:// URL"));
    }
    Ok(uri)
}

/// Runs the probe for `spec` against `instance`, bounded by the check's timeout. TTL checks
/// have no probe: the caller never asks for one.
pub(crate) async fn run(
    client: &HttpClient,
    spec: &CheckSpec,
    instance: &ServiceInstance,
) -> Outcome {
    let probe = async {
        match &spec.kind {
            CheckKind::Http { .. } => http_probe(client, spec, instance).await,
            CheckKind::Tcp { address } => tcp_probe(address.as_deref(), instance).await,
            CheckKind::Ttl { .. } => critical("a TTL check has no probe".into()),
        }
    };
    match tokio::time::timeout(spec.timeout, probe).await {
        Ok(outcome) => outcome,
        Err(_) => critical(format!("timed out after {:?}", spec.timeout)),
    }
}

fn critical(output: String) -> Outcome {
    Outcome {
        status: HealthStatus::Critical,
        output,
    }
}

fn target(spec: &CheckSpec, instance: &ServiceInstance) -> Result<http::Uri, String> {
    let CheckKind::Http { path, url, .. } = &spec.kind else {
        return Err("not an HTTP check".into());
    };
    match url {
        Some(u) => parse_http_url(u),
        None if instance.scheme == Scheme::Https => {
            Err("HTTPS health checks are not supported yet; use a TCP or TTL check".into())
        }
        None => {
            let base: http::Uri = instance
                .base_url()
                .parse()
                .map_err(|e| format!("instance address is not a URL authority: {e}"))?;
            join(&base, path)
        }
    }
}

fn join(base: &http::Uri, path: &str) -> Result<http::Uri, String> {
    let authority = base
        .authority()
        .ok_or("instance address has no authority")?;
    format!("http://{authority}{path}")
        .parse()
        .map_err(|e| format!("cannot build check URL from {authority} and {path:?}: {e}"))
}

async fn http_probe(client: &HttpClient, spec: &CheckSpec, instance: &ServiceInstance) -> Outcome {
    let CheckKind::Http {
        method,
        headers,
        expected_status,
        ..
    } = &spec.kind
    else {
        return critical("not an HTTP check".into());
    };
    let uri = match target(spec, instance) {
        Ok(u) => u,
        Err(e) => return critical(e),
    };
    let mut builder = http::Request::builder()
        .method(method.as_str())
        .uri(uri.clone());
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = match builder.body(Empty::new()) {
        Ok(r) => r,
        Err(e) => return critical(format!("cannot build request: {e}")),
    };
    match client.request(request).await {
        Err(e) => critical(format!("HTTP {method} {uri}: {e}")),
        Ok(response) => {
            let code = response.status().as_u16();
            let status = match expected_status {
                Some(expected) if *expected == code => HealthStatus::Passing,
                Some(_) => HealthStatus::Critical,
                None if response.status().is_success() => HealthStatus::Passing,
                None if code == 429 => HealthStatus::Warning,
                None => HealthStatus::Critical,
            };
            Outcome {
                status,
                output: format!("HTTP {method} {uri}: {}", response.status()),
            }
        }
    }
}

async fn tcp_probe(address: Option<&str>, instance: &ServiceInstance) -> Outcome {
    let target = match address {
        Some(a) => a.to_owned(),
        None if instance.address.contains(':') => {
            format!("[{}]:{}", instance.address, instance.port)
        }
        None => format!("{}:{}", instance.address, instance.port),
    };
    match tokio::net::TcpStream::connect(&target).await {
        Ok(_) => Outcome {
            status: HealthStatus::Passing,
            output: format!("TCP connect {target}: success"),
        },
        Err(e) => critical(format!("TCP connect {target}: {e}")),
    }
}
