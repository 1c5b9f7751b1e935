//! Route authentication: JWT bearer tokens and API keys.
//!
//! Each JWT validator accepts exactly one algorithm bound to one key, so `alg: none` and
//! algorithm confusion (an HS256 token "signed" with an RSA public key) are refused by
//! construction: the token's `alg` must equal the configured one before the key is used.
//! API keys are kept only as SHA-256 hashes. Public keys come from a PEM file or a JWKS URL
//! (see the `jwks` module); a JWKS key is used only for the validator's one algorithm.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::config::{ApiKeyConfig, AuthConfig, JwtConfig};
use crate::jwks::Jwks;

const CHALLENGE: &str = "Bearer realm=\"flotilla\"";
const INVALID: &str = "Bearer realm=\"flotilla\", error=\"invalid_token\"";

/// Where a validator's key comes from.
enum Keys {
    /// One key from the config.
    Fixed(Arc<DecodingKey>),
    /// Keys from a JWKS URL, chosen by the token's `kid`.
    Jwks(Arc<Jwks>),
}

impl Keys {
    /// The keys of validator `cfg` (config key `key`); a JWKS source of `reuse` with the same
    /// settings is kept rather than started anew.
    fn build(
        cfg: &JwtConfig,
        alg: Algorithm,
        key: &str,
        reuse: &[Arc<Jwks>],
    ) -> Result<Self, Error> {
        let bad = |k: &str, r: &str| Error::config(format!("{key}.{k}"), r);
        let Some(url) = &cfg.jwks_url else {
            let fixed = decoding_key(cfg, alg).map_err(|(k, r)| bad(k, &r))?;
            return Ok(Self::Fixed(Arc::new(fixed)));
        };
        if alg == Algorithm::HS256 {
            return Err(bad(
                "jwks_url",
                "a JWKS holds public keys; HS256 needs a secret",
            ));
        }
        if cfg.public_key_file.is_some() {
            return Err(bad(
                "jwks_url",
                "set `jwks_url` or `public_key_file`, not both",
            ));
        }
        let (refresh, tls) = (&cfg.jwks_refresh, cfg.jwks_tls.as_ref());
        Ok(Self::Jwks(
            match reuse.iter().find(|j| j.serves(url, alg, refresh, tls)) {
                Some(same) => same.clone(),
                None => Jwks::start(url, alg, *refresh, tls, key)?,
            },
        ))
    }
}

/// One JWT validator.
pub struct Validator {
    alg: Algorithm,
    keys: Keys,
    validation: Validation,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Validators by name.
pub type Validators = HashMap<String, Arc<Validator>>;

impl Validator {
    fn build(cfg: &JwtConfig, key: &str, reuse: &[Arc<Jwks>]) -> Result<Self, Error> {
        let bad = |k: &str, r: String| Error::config(format!("{key}.{k}"), r);
        let alg = match cfg.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(bad(
                    "algorithm",
                    format!("{other:?} is not HS256, RS256, ES256 or EdDSA"),
                ));
            }
        };
        let keys = Keys::build(cfg, alg, key, reuse)?;
        Ok(Self {
            alg,
            keys,
            validation: validation(cfg, alg),
        })
    }

    /// The JWKS source, when the keys come from a URL.
    pub(crate) fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(j) => Some(j),
            Keys::Fixed(_) => None,
        }
    }

    /// Checks signature, algorithm and time/issuer/audience claims; returns the claims.
    pub async fn validate(&self, token: &str) -> Result<Value, Error> {
        let refuse = |reason| Error::Unauthenticated {
            challenge: INVALID.into(),
            reason,
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refuse("malformed bearer token"))?;
        if header.alg != self.alg {
            return Err(refuse("token algorithm not accepted"));
        }
        // RFC 7515 §4.1.11: a recipient MUST reject a token naming critical extensions it does
        // not understand, and this gateway understands none (an empty list is invalid too).
        if header.crit.is_some() {
            return Err(refuse("token names critical header extensions"));
        }
        let key = match &self.keys {
            Keys::Fixed(k) => k.clone(),
            Keys::Jwks(j) => j
                .key(header.kid.as_deref())
                .await
                .ok_or_else(|| refuse("unknown signing key"))?,
        };
        jsonwebtoken::decode::<Value>(token, &key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                tracing::debug!(error = %e, "bearer token refused");
                refuse("invalid, expired or not yet valid bearer token")
            })
    }
}

/// The claim checks of validator `cfg`: `exp` is always required (a token that never expires
/// cannot be revoked by waiting), and so are `iss` and `aud` when configured: a token that
/// leaves them out must not pass as one issued for us.
fn validation(cfg: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway.map_or(30, |d| d.as_secs());
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if cfg.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&cfg.audience);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn decoding_key(cfg: &JwtConfig, alg: Algorithm) -> Result<DecodingKey, (&'static str, String)> {
    let read = |k: &'static str, path: &str| {
        std::fs::read(path).map_err(|e| (k, format!("cannot read {path:?}: {e}")))
    };
    if alg == Algorithm::HS256 {
        let secret = match (&cfg.secret, &cfg.secret_file) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(f)) => read("secret_file", f)?,
            _ => {
                return Err((
                    "secret",
                    "HS256 needs exactly one of `secret` or `secret_file`".into(),
                ));
            }
        };
        if secret.len() < 32 {
            return Err(("secret", "an HS256 secret must be at least 32 bytes".into()));
        }
        return Ok(DecodingKey::from_secret(&secret));
    }
    let Some(file) = &cfg.public_key_file else {
        return Err((
            "public_key_file",
            format!("{alg:?} needs `public_key_file` or `jwks_url`"),
        ));
    };
    let pem = read("public_key_file", file)?;
    let parsed = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_ed_pem(&pem),
    };
    parsed.map_err(|e| {
        (
            "public_key_file",
            format!("{file:?} is not a {alg:?} public key: {e}"),
        )
    })
}

/// Builds every `[[jwt]]` validator, keeping a JWKS source of `reuse` (the running table's)
/// whose URL and settings did not change, so its keys survive a reload.
pub(crate) fn build_validators(
    cfgs: &[JwtConfig],
    reuse: &[Arc<Jwks>],
) -> Result<Validators, Error> {
    let mut out = HashMap::new();
    for (i, c) in cfgs.iter().enumerate() {
        let v = Validator::build(c, &format!("jwt[{i}]"), reuse)?;
        if out.insert(c.name.clone(), Arc::new(v)).is_some() {
            return Err(Error::config(
                format!("jwt[{i}].name"),
                format!("duplicate validator {:?}", c.name),
            ));
        }
    }
    Ok(out)
}

/// API keys by the SHA-256 of the key.
#[derive(Debug, Default)]
pub struct ApiKeys(HashMap<[u8; 32], String>);

impl ApiKeys {
    /// Parses `sha256:<hex>` hashes.
    pub fn build(cfgs: &[ApiKeyConfig]) -> Result<Self, Error> {
        let mut map = HashMap::new();
        for (i, c) in cfgs.iter().enumerate() {
            let hex_part = c.hash.strip_prefix("sha256:").unwrap_or_default();
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_part, &mut digest).map_err(|_| {
                Error::config(
                    format!("api_keys[{i}].hash"),
                    "expected `sha256:` and 64 hex digits",
                )
            })?;
            map.insert(digest, c.name.clone());
        }
        Ok(Self(map))
    }

    fn lookup(&self, key: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.0.get(&digest).map(String::as_str)
    }
}

/// Who the caller turned out to be.
#[derive(Debug, Default)]
pub struct Identity {
    /// Verified JWT claims.
    pub claims: Option<Value>,
    /// The name of the API key used.
    pub api_key: Option<String>,
}

/// A route's compiled auth policy.
#[derive(Debug)]
pub struct RouteAuth {
    jwt: Option<Arc<Validator>>,
    keys: Option<Arc<ApiKeys>>,
    require: Vec<(String, String)>,
    forward: Vec<(String, HeaderName)>,
    forward_credentials: bool,
}

/// The header carrying the name of the API key a request was authenticated with.
pub const API_KEY_NAME: HeaderName = HeaderName::from_static("x-api-key-name");
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

impl RouteAuth {
    /// Compiles a route's `auth` table at config key `key`.
    pub fn build(
        cfg: &AuthConfig,
        key: &str,
        validators: &Validators,
        keys: &Arc<ApiKeys>,
    ) -> Result<Self, Error> {
        let jwt = match &cfg.jwt {
            Some(n) => Some(validators.get(n).cloned().ok_or_else(|| {
                Error::config(
                    format!("{key}.jwt"),
                    format!("no [[jwt]] validator named {n:?}"),
                )
            })?),
            None => None,
        };
        if jwt.is_none() && !cfg.api_key {
            return Err(Error::config(key, "set `jwt`, `api_key = true`, or both"));
        }
        let forward = cfg
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim.clone(), h))
                    .map_err(|_| {
                        Error::config(format!("{key}.forward_claims.{claim}"), "not a header name")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            jwt,
            keys: cfg.api_key.then(|| keys.clone()),
            require: cfg
                .require_claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            forward,
            forward_credentials: cfg.forward_credentials,
        })
    }

    /// The headers this route sets from verified identity (so every route strips client
    /// copies of them, whether or not it authenticates).
    pub fn identity_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|(_, h)| h)
    }

    /// Whether this route verifies JWTs (so `claim:` rate-limit keys are usable).
    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Authenticates the request: 401 without valid credentials, 403 without required claims.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Error> {
        if let (Some(keys), Some(k)) = (&self.keys, headers.get(API_KEY)) {
            let name = k.to_str().ok().and_then(|k| keys.lookup(k));
            return match name {
                Some(n) => Ok(Identity {
                    claims: None,
                    api_key: Some(n.to_owned()),
                }),
                None => Err(Error::Unauthenticated {
                    challenge: CHALLENGE.into(),
                    reason: "unknown API key",
                }),
            };
        }
        let Some(v) = &self.jwt else {
            return Err(Error::Unauthenticated {
                challenge: "ApiKey".into(),
                reason: "an API key is required",
            });
        };
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(bearer_token)
            .ok_or(Error::Unauthenticated {
                challenge: CHALLENGE.into(),
                reason: "a bearer token is required",
            })?;
        let claims = v.validate(token).await?;
        if !self
            .require
            .iter()
            .all(|(k, want)| claim_has(&claims, k, want))
        {
            return Err(Error::Forbidden("a required claim is missing"));
        }
        Ok(Identity {
            claims: Some(claims),
            api_key: None,
        })
    }

    /// Sets the configured claim headers (after removing any the client sent itself) and,
    /// unless `forward_credentials`, removes the credentials this route verifies.
    pub fn forward(&self, id: &Identity, headers: &mut HeaderMap) {
        if !self.forward_credentials {
            if self.jwt.is_some() {
                headers.remove(http::header::AUTHORIZATION);
            }
            if self.keys.is_some() {
                headers.remove(API_KEY);
            }
        }
        for (claim, header) in &self.forward {
            headers.remove(header);
            let value = id.claims.as_ref().and_then(|c| claim_text(c, claim));
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(header.clone(), v);
            }
        }
        headers.remove(API_KEY_NAME);
        if let Some(v) = id
            .api_key
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert(API_KEY_NAME, v);
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1) and one or more spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A claim as text: strings as-is, numbers and booleans printed, others absent.
pub fn claim_text(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn claim_has(claims: &Value, name: &str, want: &str) -> bool {
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(want)),
        Some(Value::String(s)) => s.split(' ').any(|p| p == want),
        _ => false,
    }
}
