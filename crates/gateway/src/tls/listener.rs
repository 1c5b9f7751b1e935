//! The HTTPS listener's TLS: a certificate resolver whose key pair can be swapped while
//! connections are being accepted, so a renewed certificate takes effect on reload without a
//! restart (handshakes in progress finish with the pair they started with).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

use super::{load_certs, provider};
use crate::Error;
use crate::config::ListenerTls;

/// The certificate currently presented to clients.
#[derive(Debug)]
struct SwappableCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listener's TLS state: an acceptor and the handle to replace its certificate.
#[derive(Clone)]
pub(crate) struct ServerTls {
    cert: Arc<SwappableCert>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the key pair named by `cfg` and builds an acceptor offering `h2` and `http/1.1`.
    pub(crate) fn build(cfg: &ListenerTls) -> Result<Self, Error> {
        let cert = Arc::new(SwappableCert(ArcSwap::from_pointee(load_pair(cfg)?)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("server.tls", e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            cert,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Re-reads the key pair; on error the current one keeps being served.
    pub(crate) fn reload(&self, cfg: &ListenerTls) -> Result<(), Error> {
        let pair = load_pair(cfg)?;
        self.cert.0.store(Arc::new(pair));
        Ok(())
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn load_pair(cfg: &ListenerTls) -> Result<CertifiedKey, Error> {
    let certs = load_certs(&cfg.cert_file, "server.tls.cert_file")?;
    let path = &cfg.key_file;
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| {
        Error::config(
            "server.tls.key_file",
            format!("cannot read a private key from {path:?}: {e}"),
        )
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        Error::config(
            "server.tls.key_file",
            format!("{path:?} does not fit the certificate: {e}"),
        )
    })
}
