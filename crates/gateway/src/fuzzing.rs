//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`): the internals that
//! read untrusted input but are not part of the public API.

use std::sync::Arc;

use jsonwebtoken::Algorithm;

use crate::auth::{Validator, build_validators};
use crate::config::JwtConfig;

/// Parses `body` as a JWKS document for every public-key algorithm the gateway accepts.
pub fn jwks(body: &[u8]) {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let _ = crate::jwks::parse(body, alg);
    }
}

/// An HS256 validator with `secret`, checking `iss` and `aud` as routes do.
///
/// # Panics
///
/// If the fixed configuration is refused, which the fuzz target would report at once.
pub fn hs256_validator(secret: &str) -> Arc<Validator> {
    let cfg = JwtConfig {
        name: "fuzz".into(),
        algorithm: "HS256".into(),
        secret: Some(secret.into()),
        issuer: Some("https://issuer.example".into()),
        audience: vec!["orders".into()],
        ..JwtConfig::default()
    };
    #[allow(clippy::expect_used)]
    build_validators(&[cfg], &[])
        .expect("a fixed HS256 validator")
        .remove("fuzz")
        .expect("the validator just built")
}
