//! Connections to upstreams: one pool type for `http://` and `https://` instances.
//! Upstreams without a `tls` table share the gateway's client, which trusts the public web
//! roots (compiled in, so a container without a CA bundle behaves like any other host); an
//! upstream with a private CA or an SNI override gets a client (and pool) of its own.

use hyper_rustls::{ConfigBuilderExt, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, WantsVerifier};
use rustls_pki_types::ServerName;

use super::{load_certs, provider};
use crate::Error;
use crate::config::{ServerOptions, UpstreamTls};
use crate::upstream_pool::Pool;

/// A pool of keep-alive HTTP/1.1 connections that speaks `http` or `https` by the URI's scheme.
pub(crate) type UpstreamClient = Pool;

/// The shared client: public web roots, SNI from the URL's host.
pub(crate) fn plain_client(server: &ServerOptions) -> UpstreamClient {
    let config = builder()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_webpki_roots()
        .with_no_client_auth();
    pooled(server, connector(config, None))
}

/// A client for an upstream's `tls` table at config key `key`.
pub(crate) fn tls_client(
    server: &ServerOptions,
    tls: &UpstreamTls,
    key: &str,
) -> Result<UpstreamClient, Error> {
    let b = builder().map_err(|e| Error::config(key, e.to_string()))?;
    let config = match &tls.ca_file {
        None => b.with_webpki_roots().with_no_client_auth(),
        Some(path) => {
            let k = format!("{key}.ca_file");
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path, &k)? {
                roots
                    .add(cert)
                    .map_err(|e| Error::config(&k, format!("{path:?}: {e}")))?;
            }
            b.with_root_certificates(roots).with_no_client_auth()
        }
    };
    let name = match &tls.server_name {
        None => None,
        Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
            Error::config(
                format!("{key}.server_name"),
                format!("{n:?} is not a DNS name or IP address"),
            )
        })?),
    };
    Ok(pooled(server, connector(config, name)))
}

fn builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, rustls::Error> {
    ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()
}

fn connector(
    config: ClientConfig,
    name: Option<ServerName<'static>>,
) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // The TLS layer wraps this connector, so it must accept `https://` URIs too.
    http.enforce_http(false);
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let b = match name {
        Some(n) => b.with_server_name_resolver(FixedServerNameResolver::new(n)),
        None => b,
    };
    b.enable_http1().wrap_connector(http)
}

fn pooled(server: &ServerOptions, connector: HttpsConnector<HttpConnector>) -> UpstreamClient {
    Pool::new(
        connector,
        server.upstream_idle_timeout,
        server.upstream_pool_idle_per_host,
    )
}
