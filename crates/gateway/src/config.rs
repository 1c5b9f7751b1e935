//! The gateway's configuration (the `[gateway]` section of `flotilla.toml`, or a file of its
//! own): serde types with documented defaults, and validation that names the offending key.
//!
//! Validation happens in [`crate::table::RouteTable::build`], which compiles these types into
//! the matcher; an invalid config never replaces a running one.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod edge;
pub use edge::{CorsConfig, JwksRefresh, ListenerTls, UpstreamTls};

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayOptions {
    /// Listener limits and timeouts.
    pub server: ServerOptions,
    /// Named upstreams that routes point at.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes, matched in the documented precedence order (see `docs/gateway.md`).
    pub routes: Vec<RouteConfig>,
    /// Named JWT validators that routes refer to in `auth.jwt`.
    pub jwt: Vec<JwtConfig>,
    /// API keys, stored as SHA-256 hashes; routes accept them with `auth.api_key = true`.
    pub api_keys: Vec<ApiKeyConfig>,
    /// The shared response cache that routes with `cache.enabled` use.
    pub cache: CacheOptions,
}

impl GatewayOptions {
    /// Parses TOML text; errors carry the line and key.
    pub fn from_toml(text: &str) -> Result<Self, crate::Error> {
        toml::from_str(text).map_err(|e| crate::Error::config("toml", e.to_string()))
    }
}

/// Listener hardening. Defaults follow nginx's and hyper's conservative values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOptions {
    /// Largest request head (request line + headers) in bytes; default 16 KiB, minimum 8 KiB.
    pub max_header_bytes: usize,
    /// Most request headers; default 100.
    pub max_headers: usize,
    /// Longest request target in bytes; default 8 KiB. Longer gets 414.
    pub max_uri_bytes: usize,
    /// Most concurrent client connections; further connections wait in the accept queue.
    /// Default 10 000.
    pub max_connections: usize,
    /// Most requests on one keep-alive connection before it is closed; default 10 000.
    pub max_requests_per_connection: u64,
    /// Time allowed to receive a complete request head (slowloris defence); default 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Default request-body limit in bytes for routes that set none; default 10 MiB. 0 = none.
    pub max_body_bytes: u64,
    /// Idle upstream connections kept per host; default 64.
    pub upstream_pool_idle_per_host: usize,
    /// How long an idle pooled upstream connection is kept; default 90 s.
    #[serde(with = "humantime_serde")]
    pub upstream_idle_timeout: Duration,
    /// Value of the `Via` header's pseudonym; default `flotilla`.
    pub via_name: String,
    /// Whether clients are trusted proxies whose `Forwarded` / `X-Forwarded-*` headers are
    /// kept and appended to. Default false: the client's are dropped and the gateway sets its
    /// own, so no client can forge its address, host or scheme.
    pub trust_forwarded_headers: bool,
    /// Serve HTTPS with this certificate; absent = cleartext HTTP/1.1 and h2c.
    pub tls: Option<ListenerTls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_connections: 10_000,
            max_requests_per_connection: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 10 * 1024 * 1024,
            upstream_pool_idle_per_host: 64,
            upstream_idle_timeout: Duration::from_secs(90),
            via_name: "flotilla".into(),
            trust_forwarded_headers: false,
            tls: None,
        }
    }
}

/// The gateway-wide response cache (RFC 9111). Read at start, like `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheOptions {
    /// Total size of stored responses (bodies and headers) in bytes; default 256 MiB. The
    /// least valuable entries are evicted beyond it.
    pub max_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A route's use of the shared cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// Serve this route's GET and HEAD requests from the cache; default false.
    pub enabled: bool,
    /// Largest response body stored, in bytes; a larger one streams through uncached.
    /// Default 1 MiB.
    pub max_entry_bytes: u64,
    /// Freshness given to a response with no explicit expiry whose status is heuristically
    /// cacheable (RFC 9111 §4.2.2), instead of the Last-Modified heuristic. Default none.
    #[serde(with = "humantime_serde", default)]
    pub default_ttl: Option<Duration>,
    /// Cap on heuristic freshness (10% of the time since `Last-Modified`); `0s` disables
    /// heuristic freshness. Default 1 day.
    #[serde(with = "humantime_serde")]
    pub max_heuristic_ttl: Duration,
    /// Most staleness a client may accept with a request `max-stale`; default `0s`: a stale
    /// response is never served just because a client asked for it.
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
}

impl Default for RouteCacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_entry_bytes: 1024 * 1024,
            default_ttl: None,
            max_heuristic_ttl: Duration::from_secs(86_400),
            max_stale: Duration::ZERO,
        }
    }
}

/// Where a route's requests go: a discovery service (with filters) or static URLs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The name routes use.
    pub name: String,
    /// A service name resolved through discovery. Exclusive with `urls`.
    pub service: Option<String>,
    /// Semver requirement on instance versions (`^1.2`).
    pub version: Option<String>,
    /// Tags every selected instance must carry.
    pub tags: Vec<String>,
    /// Static base URLs (`http://127.0.0.1:8080`). Exclusive with `service`.
    pub urls: Vec<String>,
    /// How an instance is chosen: `round_robin`, `random`, `weighted`, `least_outstanding`,
    /// `peak_ewma` (default: power of two choices by latency x load) or `consistent_hash`
    /// (keyed by the client address).
    pub balance: flotilla_resilience::balance::Strategy,
    /// Consecutive failures that open the breaker for an instance; 0 disables it. Default 5.
    /// A failure is the gateway's own: a connect error, a reset or a timeout. An answer is
    /// not, whatever its status, unless `breaker_statuses` lists it.
    pub breaker_failures: Option<u32>,
    /// Upstream answers (5xx statuses) that also count as failures for the breaker and the
    /// outlier detector; default none. Off by default because a service answering 503 for
    /// one route whose dependency is down is healthy for its other routes: counting those
    /// answers would cut every route off from it.
    pub breaker_statuses: Vec<u16>,
    /// How long an open breaker refuses traffic before letting a probe through; default 10 s.
    #[serde(with = "humantime_serde", default)]
    pub breaker_open_for: Option<Duration>,
    /// How `https://` instances are verified; default: the public web roots.
    pub tls: Option<UpstreamTls>,
}

/// How a route matches a path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics, logs and the admin API; defaults to `route-<index>`.
    pub name: Option<String>,
    /// A path template: literals, `{param}` segments and a final `{*rest}` catch-all. Without
    /// parameters it is an exact match. Exclusive with `prefix`.
    pub path: Option<String>,
    /// A path prefix matched at segment boundaries (`/api` matches `/api` and `/api/x`, not
    /// `/apix`). Exclusive with `path`.
    pub prefix: Option<String>,
    /// Allowed methods; empty means any.
    pub methods: Vec<String>,
    /// Allowed `Host` values (without port), exact or `*.example.com`; empty means any.
    pub hosts: Vec<String>,
    /// Headers that must be present with exactly this value (`"*"` = present with any value).
    pub headers: BTreeMap<String, String>,
    /// Higher wins before any other precedence rule; default 0.
    pub priority: i32,
    /// The upstream's `name`.
    pub upstream: String,
    /// Path rewriting before forwarding.
    pub rewrite: RewriteConfig,
    /// Header edits on the forwarded request.
    pub request_headers: HeaderEdits,
    /// Header edits on the response.
    pub response_headers: HeaderEdits,
    /// Upstream response-head timeout; default 30 s.
    #[serde(with = "humantime_serde", default)]
    pub timeout: Option<Duration>,
    /// Extra attempts for idempotent requests that failed to connect; default 0.
    pub retries: u32,
    /// Request-body limit in bytes; default `server.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// Rate limit, if any.
    pub rate_limit: Option<RateLimitConfig>,
    /// Authentication, if any.
    pub auth: Option<AuthConfig>,
    /// Cross-origin resource sharing, if any.
    pub cors: Option<CorsConfig>,
    /// Response caching, if any.
    pub cache: Option<RouteCacheConfig>,
    /// A JSON field selection / removal / renaming applied to successful JSON answers.
    pub transform: Option<crate::transform::TransformConfig>,
    /// Protocols besides `websocket` a client may switch to with `Upgrade` on this route. Any
    /// other upgrade is stripped and the request forwarded as plain HTTP/1.1; `h2c` is refused.
    pub upgrade_protocols: Vec<String>,
}

/// Path rewriting. At most one of `strip_prefix`, `replace_prefix` and `template`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteConfig {
    /// Remove this prefix (at a segment boundary) from the path.
    pub strip_prefix: Option<String>,
    /// Replace the matched `prefix` with this one.
    pub replace_prefix: Option<String>,
    /// Build the path from a template using the route's parameters (`/v2/users/{id}`).
    pub template: Option<String>,
}

/// Header edits: `set` replaces, `add` appends, `remove` deletes (applied remove, set, add).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderEdits {
    /// Headers appended.
    pub add: BTreeMap<String, String>,
    /// Headers replaced.
    pub set: BTreeMap<String, String>,
    /// Headers removed.
    pub remove: Vec<String>,
}

/// The window a rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl Per {
    /// The window's length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        })
    }
}

/// A GCRA rate limit: `requests` per `per`, with bursts up to `burst` (default `requests`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window.
    pub per: Per,
    /// Largest burst; default `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// What identifies a caller: `client_ip` (default), `header:<name>`, `api_key` or
    /// `claim:<name>` (needs JWT auth on the route).
    #[serde(default = "default_key")]
    pub key: String,
    /// Count against the limiter shared by every replica (needs a shared limiter, e.g.
    /// `[gateway.shared_rate_limits]` in `flotilla.toml`) instead of this replica's memory.
    #[serde(default)]
    pub shared: bool,
    /// When the shared limiter cannot answer in time: `local` (default), `allow` or `deny`.
    #[serde(default)]
    pub on_shared_failure: crate::ratelimit::OnSharedFailure,
}

fn default_key() -> String {
    "client_ip".into()
}

/// Route authentication: a JWT validator, API keys, or both (either one suffices).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Name of a `[[jwt]]` validator.
    pub jwt: Option<String>,
    /// Accept a key from `[[api_keys]]` in the `X-API-Key` header.
    pub api_key: bool,
    /// Claims that must be present with these values (a string claim equal, or an array
    /// claim containing it); missing gives 403.
    pub require_claims: BTreeMap<String, String>,
    /// Claims forwarded upstream as headers: claim name -> header name.
    pub forward_claims: BTreeMap<String, String>,
    /// Forward the verified credential (`Authorization`, `X-API-Key`) upstream; default false:
    /// upstreams get the identity headers, not the secret.
    pub forward_credentials: bool,
}

/// A JWT validator: one algorithm, its keys (an HMAC secret, a PEM public key, or a JWKS URL
/// fetched and refreshed in the background), and the claim checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Name routes use.
    pub name: String,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`; only this algorithm is accepted.
    pub algorithm: String,
    /// HMAC secret (HS256), inline. Prefer `secret_file`.
    pub secret: Option<String>,
    /// File holding the HMAC secret (HS256).
    pub secret_file: Option<String>,
    /// PEM public key file (RS256, ES256, EdDSA). Exclusive with `jwks_url`.
    pub public_key_file: Option<String>,
    /// JWKS URL (RS256, ES256, EdDSA): `https://`, or `http://` to a loopback host only.
    /// Tokens name their key by `kid`. Exclusive with `public_key_file`.
    pub jwks_url: Option<String>,
    /// How often the JWKS is fetched.
    pub jwks_refresh: JwksRefresh,
    /// How the JWKS server's certificate is verified; default: the public web roots.
    pub jwks_tls: Option<UpstreamTls>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`; default 30 s.
    #[serde(with = "humantime_serde", default)]
    pub leeway: Option<Duration>,
}

/// One API key, stored as the lowercase hex SHA-256 of the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key; forwarded as `X-Api-Key-Name` and usable as a rate-limit key.
    pub name: String,
    /// `sha256:<64 hex digits>`.
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses_from_toml() {
        let cfg = GatewayOptions::from_toml(
            r#"
            [server]
            header_read_timeout = "5s"
            [[upstreams]]
            name = "users"
            service = "users"
            version = "^1"
            [[routes]]
            path = "/users/{id}"
            upstream = "users"
            timeout = "2s"
            rate_limit = { requests = 10, per = "minute" }
            cache = { enabled = true, max_entry_bytes = 1048576, default_ttl = "30s", max_heuristic_ttl = "1h" }
            [cache]
            max_bytes = 268435456
            "#,
        )
        .unwrap();
        let cache = cfg.routes[0].cache.as_ref().unwrap();
        assert!(cache.enabled);
        assert_eq!(cache.default_ttl, Some(Duration::from_secs(30)));
        assert_eq!(cache.max_heuristic_ttl, Duration::from_secs(3600));
        assert_eq!(cfg.cache.max_bytes, 268_435_456);
        assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(5));
        assert_eq!(cfg.routes[0].timeout, Some(Duration::from_secs(2)));
        assert_eq!(cfg.routes[0].rate_limit.as_ref().unwrap().key, "client_ip");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e =
            GatewayOptions::from_toml("[[routes]]\npaht = \"/x\"\nupstream = \"u\"").unwrap_err();
        assert!(e.to_string().contains("paht"), "{e}");
    }
}
