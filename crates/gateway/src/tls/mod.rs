//! TLS at both ends of the gateway, on rustls with the pure-Rust `ring` provider: the HTTPS
//! listener (certificate reloadable, ALPN `h2` and `http/1.1`) and the connector that reaches
//! `https://` upstreams (public web roots or a private CA, optional SNI override).

mod listener;
mod upstream;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::Error;

pub(crate) use listener::ServerTls;
pub(crate) use upstream::{UpstreamClient, plain_client, tls_client};

/// The one crypto provider the gateway uses, chosen explicitly so no process-wide default
/// (or a C-built provider pulled in elsewhere) decides for us.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`; the error names config key `key`.
pub(crate) fn load_certs(path: &str, key: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::config(key, format!("cannot read certificates from {path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(
            key,
            format!("{path:?} holds no PEM certificate"),
        ));
    }
    Ok(certs)
}
