//! Configuration of the edge features: TLS on the listener and to upstreams, CORS, and JWKS
//! refresh bounds. Kept apart from the core routing types so each stays small.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[server.tls]`: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of cleartext.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// `[upstreams.tls]`: how `https://` instances of an upstream are verified (also used by
/// `[jwt.jwks_tls]` for a JWKS served under a private CA).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of the CA certificates to trust instead of the public web roots (a private CA).
    pub ca_file: Option<String>,
    /// Name to send as SNI and to verify in the certificate instead of the URL's host.
    pub server_name: Option<String>,
}

/// `[routes.cors]`: cross-origin resource sharing answered by the gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed (`https://app.example.com`, exact), or `["*"]` for any.
    pub allow_origins: Vec<String>,
    /// Methods a preflight allows; default `GET, HEAD, POST`.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight allows; `["*"]` for any (not with credentials).
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// Whether cookies and `Authorization` may be sent; needs explicit origins.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(with = "humantime_serde", default)]
    pub max_age: Option<Duration>,
}

/// How often a JWKS is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwksRefresh {
    /// Shortest time a fetched key set is kept, whatever `Cache-Control` says; default 1 min.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Longest time a fetched key set is kept; default 1 h.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Time a key set is kept when the answer has no `max-age`; default 5 min.
    #[serde(with = "humantime_serde")]
    pub default: Duration,
    /// Least time between two fetches forced by tokens with an unknown `kid`; default 30 s.
    #[serde(with = "humantime_serde")]
    pub unknown_kid_cooldown: Duration,
}

impl Default for JwksRefresh {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            default: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
        }
    }
}
