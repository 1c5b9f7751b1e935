//! JWT signing keys fetched from a JWKS URL (RFC 7517): cached for the answer's
//! `Cache-Control: max-age` within configured bounds, refreshed in the background, and
//! refetched early when a token names an unknown `kid` (key rotation) — but at most once per
//! cooldown, so forged `kid`s cannot turn the gateway into a fetch storm against the issuer.
//! A failed or empty fetch keeps the last good key set, and a config reload that keeps the
//! same URL keeps the same source (and its keys), so a reload never waits on the issuer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::{JwksRefresh, ServerOptions, UpstreamTls};
use crate::tls::UpstreamClient;

/// Largest JWKS document accepted.
const MAX_BYTES: usize = 1024 * 1024;
/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The usable keys of one fetched set, by `kid`.
#[derive(Default)]
pub(crate) struct KeySet(HashMap<String, Arc<DecodingKey>>, Option<Arc<DecodingKey>>);

impl KeySet {
    /// The key named `kid`; a token without `kid` gets the set's only key, if it has one.
    fn find(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        match kid {
            Some(k) => self.0.get(k).cloned(),
            None => self.1.clone(),
        }
    }
}

/// One validator's JWKS source.
pub(crate) struct Jwks {
    /// The URL as configured, to recognise the same source across reloads.
    configured: String,
    url: Uri,
    alg: Algorithm,
    refresh: JwksRefresh,
    tls: Option<UpstreamTls>,
    client: UpstreamClient,
    keys: ArcSwap<KeySet>,
    /// Serialises fetches; holds when the last fetch forced by an unknown `kid` started.
    fetching: Mutex<Option<Instant>>,
    /// Ends the background refresh when the source is dropped.
    stop: CancellationToken,
    /// Whether the background refresh runs.
    refreshing: AtomicBool,
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Validates `url` (config key `key`) and starts the background refresh — now inside a
    /// Tokio runtime, else with the first token.
    pub(crate) fn start(
        url: &str,
        alg: Algorithm,
        refresh: JwksRefresh,
        tls: Option<&UpstreamTls>,
        key: &str,
    ) -> Result<Arc<Self>, Error> {
        let configured = url.to_owned();
        let url = checked_url(url, &format!("{key}.jwks_url"))?;
        check_refresh(&refresh, &format!("{key}.jwks_refresh"))?;
        let pool = ServerOptions::default();
        let client = match tls {
            Some(t) => crate::tls::tls_client(&pool, t, &format!("{key}.jwks_tls"))?,
            None => crate::tls::plain_client(&pool),
        };
        let jwks = Arc::new(Self {
            configured,
            url,
            alg,
            refresh,
            tls: tls.cloned(),
            client,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetching: Mutex::new(None),
            stop: CancellationToken::new(),
            refreshing: AtomicBool::new(false),
        });
        jwks.ensure_refreshing();
        Ok(jwks)
    }

    /// Starts the background refresh once, when a runtime is at hand.
    fn ensure_refreshing(self: &Arc<Self>) {
        if self.refreshing.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.refreshing.swap(true, Ordering::AcqRel) {
            rt.spawn(refresh_loop(Arc::downgrade(self), self.stop.clone()));
        }
    }

    /// Whether this source was started for the same URL, algorithm, refresh and TLS settings.
    pub(crate) fn serves(
        &self,
        url: &str,
        alg: Algorithm,
        refresh: &JwksRefresh,
        tls: Option<&UpstreamTls>,
    ) -> bool {
        self.configured == url
            && self.alg == alg
            && self.refresh == *refresh
            && self.tls.as_ref() == tls
    }

    /// The key for a token's `kid`, refetching the set (at most once per cooldown) when the
    /// `kid` is unknown.
    pub(crate) async fn key(self: &Arc<Self>, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        self.ensure_refreshing();
        if let Some(k) = self.keys.load().find(kid) {
            return Some(k);
        }
        let mut last_forced = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(k) = self.keys.load().find(kid) {
            return Some(k);
        }
        let now = Instant::now();
        if last_forced.is_some_and(|t| now < t + self.refresh.unknown_kid_cooldown) {
            return None;
        }
        *last_forced = Some(now);
        tracing::debug!(url = %self.url, "unknown key id; refetching the JWKS");
        self.fetch_logged().await;
        self.keys.load().find(kid)
    }

    /// Fetches and installs the key set; returns how long it may be kept (`min` on failure).
    async fn fetch_logged(&self) -> Duration {
        match self.fetch().await {
            Ok((set, ttl)) => {
                self.keys.store(Arc::new(set));
                ttl
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "JWKS fetch failed; keeping the last good keys");
                self.refresh.min
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let req = Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new().map_err(|n| match n {}).boxed())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let ttl = ttl(resp.headers(), &self.refresh);
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BYTES).collect(),
        )
        .await
        .map_err(|_| "body timed out".to_owned())?
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
        let set = parse(&body, self.alg)?;
        Ok((set, ttl))
    }
}

/// How long a fetched set is kept: `max-age` from `Cache-Control` (the default without one),
/// clamped to the configured bounds.
fn ttl(headers: &http::HeaderMap, refresh: &JwksRefresh) -> Duration {
    let max_age = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            d.trim()
                .strip_prefix("max-age=")?
                .trim_matches('"')
                .parse()
                .ok()
        })
        .map(Duration::from_secs);
    max_age
        .unwrap_or(refresh.default)
        .clamp(refresh.min, refresh.max)
}

/// Fetches now and again whenever the last answer expires, until the validator is dropped
/// (a reload replaces it).
async fn refresh_loop(jwks: Weak<Jwks>, stop: CancellationToken) {
    loop {
        let Some(this) = jwks.upgrade() else { return };
        let wait = {
            let _serialised = this.fetching.lock().await;
            this.fetch_logged().await
        };
        drop(this);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The keys of a JWKS document usable with `alg`; an error when none is.
pub(crate) fn parse(body: &[u8], alg: Algorithm) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut by_kid = HashMap::new();
    let mut all = Vec::new();
    // Keys of other types or uses are skipped one by one, so one exotic key cannot hide the rest.
    for jwk in doc
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
    {
        if !usable(&jwk, alg) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let key = Arc::new(key);
        if let Some(kid) = &jwk.common.key_id {
            by_kid.insert(kid.clone(), key.clone());
        }
        all.push(key);
    }
    if all.is_empty() {
        return Err(format!("no {alg:?} signing key in the set"));
    }
    let only = (all.len() == 1).then(|| all.remove(0));
    Ok(KeySet(by_kid, only))
}

/// Whether `jwk` is a public signing key of `alg`'s type; symmetric keys never are.
fn usable(jwk: &Jwk, alg: Algorithm) -> bool {
    let c = &jwk.common;
    let for_signing = c
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    let alg_ok = c.key_algorithm.is_none_or(|a| key_alg(alg) == Some(a));
    let kind_ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    for_signing && alg_ok && kind_ok
}

fn key_alg(alg: Algorithm) -> Option<KeyAlgorithm> {
    match alg {
        Algorithm::RS256 => Some(KeyAlgorithm::RS256),
        Algorithm::ES256 => Some(KeyAlgorithm::ES256),
        Algorithm::EdDSA => Some(KeyAlgorithm::EdDSA),
        _ => None,
    }
}

/// `https://`, or `http://` to a loopback host (a local test issuer or a sidecar).
fn checked_url(url: &str, key: &str) -> Result<Uri, Error> {
    let bad = |r: &str| Error::config(key, format!("{url:?}: {r}"));
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(bad(
            "http:// is allowed only to a loopback host; use https://",
        )),
        _ => Err(bad("expected an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_refresh(r: &JwksRefresh, key: &str) -> Result<(), Error> {
    if r.min.is_zero() || r.min > r.max {
        return Err(Error::config(key, "needs 0 < min <= max"));
    }
    if r.unknown_kid_cooldown.is_zero() {
        return Err(Error::config(
            format!("{key}.unknown_kid_cooldown"),
            "must be more than zero, or forged key ids could force a fetch per request",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted() {
        for ok in [
            "https://id.example.com/jwks",
            "http://127.0.0.1:9/k",
            "http://localhost/k",
            "http://[::1]:8/k",
        ] {
            assert!(checked_url(ok, "jwt[0].jwks_url").is_ok(), "{ok}");
        }
        for bad in ["http://id.example.com/jwks", "ftp://x/y", "/jwks"] {
            assert!(checked_url(bad, "jwt[0].jwks_url").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_source_built_outside_a_runtime_starts_refreshing_with_its_first_token() {
        let refresh = JwksRefresh::default();
        let url = "http://127.0.0.1:1/jwks";
        let jwks = Jwks::start(url, Algorithm::ES256, refresh, None, "jwt[0]").unwrap();
        assert!(!jwks.refreshing.load(Ordering::Acquire));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Nothing listens on port 1: the fetch fails and the key stays unknown.
        assert!(rt.block_on(jwks.key(Some("a"))).is_none());
        assert!(jwks.refreshing.load(Ordering::Acquire));
    }

    #[test]
    fn max_age_is_honoured_within_the_bounds() {
        let r = JwksRefresh::default();
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            ttl(&h, &r)
        };
        assert_eq!(with("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(with("max-age=5"), r.min);
        assert_eq!(with("max-age=999999"), r.max);
        assert_eq!(with("no-cache"), r.default);
        assert_eq!(ttl(&http::HeaderMap::new(), &r), r.default);
    }

    #[test]
    fn symmetric_and_foreign_keys_are_skipped() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "use": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        ]});
        let set = parse(doc.to_string().as_bytes(), Algorithm::ES256).unwrap();
        assert!(set.find(Some("e")).is_some());
        assert!(set.find(Some("h")).is_none());
        assert!(
            set.find(None).is_some(),
            "the only key serves tokens without kid"
        );
        assert!(parse(doc.to_string().as_bytes(), Algorithm::RS256).is_err());
    }
}
