//! JWT validators backed by a JWKS URL: keys of each type accepted, rotation found by a
//! refetch, forged key ids bounded to one fetch per cooldown, failures keep the last keys.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::sync::mpsc;

/// A JWKS document server whose answer the test changes; it reports every fetch.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<(StatusCode, String)>>,
    fetches: mpsc::UnboundedReceiver<()>,
}

impl JwksServer {
    async fn start(keys: &[Jwk]) -> Self {
        let answer = Arc::new(Mutex::new((StatusCode::OK, jwks(keys))));
        let (tx, fetches) = mpsc::unbounded_channel();
        let a = answer.clone();
        let router = Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (a, tx) = (a.clone(), tx.clone());
                async move {
                    let _ = tx.send(());
                    let (status, body) = a.lock().unwrap().clone();
                    (status, [("cache-control", "public, max-age=3600")], body)
                }
            }),
        );
        let base = upstream(router).await;
        Self {
            url: format!("{base}/jwks.json"),
            answer,
            fetches,
        }
    }

    fn serve(&self, keys: &[Jwk]) {
        *self.answer.lock().unwrap() = (StatusCode::OK, jwks(keys));
    }

    fn fail(&self) {
        *self.answer.lock().unwrap() = (StatusCode::SERVICE_UNAVAILABLE, String::new());
    }

    /// Fetches made so far that the test has not counted yet.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.fetches.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

fn jwks(keys: &[Jwk]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A signing key, its public JWK (with `kid`) and the algorithm.
struct Signer {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
}

impl Signer {
    fn from_pem(alg: Algorithm, kid: &str, pem: &[u8]) -> Self {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        }
        .unwrap();
        Self {
            alg,
            kid: kid.into(),
            key,
        }
    }

    /// A fresh P-256 key.
    fn es256(kid: &str) -> Self {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        Self::from_pem(Algorithm::ES256, kid, pem.as_bytes())
    }

    fn fixture(alg: Algorithm, kid: &str, file: &str) -> Self {
        let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        Self::from_pem(alg, kid, &std::fs::read(path).unwrap())
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }

    fn token(&self) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 300;
        jsonwebtoken::encode(&header, &json!({"sub": "alice", "exp": exp}), &self.key).unwrap()
    }

    /// A token signed by this key but naming another `kid`.
    fn token_as(&self, kid: &str) -> String {
        Self {
            alg: self.alg,
            kid: kid.into(),
            key: self.key.clone(),
        }
        .token()
    }
}

async fn jwks_gateway(url: &str, algs: &[(&str, &str)], cooldown: &str) -> Running {
    gateway(&jwks_config(&echo_upstream().await, url, algs, cooldown)).await
}

fn jwks_config(up: &str, url: &str, algs: &[(&str, &str)], cooldown: &str) -> String {
    let mut cfg = format!("[[upstreams]]\nname = \"echo\"\nurls = [\"{up}\"]\n");
    for (name, alg) in algs {
        cfg.push_str(&format!(
            "[[jwt]]\nname = \"{name}\"\nalgorithm = \"{alg}\"\njwks_url = \"{url}\"\n\
             jwks_refresh = {{ unknown_kid_cooldown = \"{cooldown}\" }}\n\
             [[routes]]\nprefix = \"/{name}\"\nupstream = \"echo\"\nauth = {{ jwt = \"{name}\" }}\n"
        ));
    }
    cfg
}

async fn call(gw: &Running, path: &str, token: &str) -> u16 {
    get(gw, path, &[("authorization", &format!("Bearer {token}"))])
        .await
        .status
}

#[tokio::test]
async fn rsa_ec_and_okp_keys_from_a_jwks_verify_their_tokens() {
    let rs = Signer::fixture(Algorithm::RS256, "rsa-1", "rsa_private.pem");
    let es = Signer::fixture(Algorithm::ES256, "ec-1", "ec_private.pem");
    let ed = Signer::fixture(Algorithm::EdDSA, "ed-1", "ed_private.pem");
    let server = JwksServer::start(&[rs.jwk(), es.jwk(), ed.jwk()]).await;
    let gw = jwks_gateway(
        &server.url,
        &[("rs", "RS256"), ("es", "ES256"), ("ed", "EdDSA")],
        "1h",
    )
    .await;
    assert_eq!(call(&gw, "/rs/x", &rs.token()).await, 200);
    assert_eq!(call(&gw, "/es/x", &es.token()).await, 200);
    assert_eq!(call(&gw, "/ed/x", &ed.token()).await, 200);
    // A key of another type under the same kid space never verifies: ES token on the RS route.
    assert_eq!(call(&gw, "/rs/x", &es.token()).await, 401);
}

#[tokio::test]
async fn the_key_set_is_fetched_in_the_background_before_any_token_arrives() {
    let a = Signer::es256("a");
    let mut server = JwksServer::start(&[a.jwk()]).await;
    let _gw = jwks_gateway(&server.url, &[("es", "ES256")], "1h").await;
    server.fetches.recv().await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_is_found_by_one_refetch() {
    let (a, b) = (Signer::es256("a"), Signer::es256("b"));
    let mut server = JwksServer::start(&[a.jwk()]).await;
    let gw = jwks_gateway(&server.url, &[("es", "ES256")], "1h").await;
    server.fetches.recv().await.unwrap();
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
    assert_eq!(server.drain(), 0, "a known kid needs no fetch");
    server.serve(&[b.jwk()]);
    assert_eq!(call(&gw, "/es/x", &b.token()).await, 200);
    assert_eq!(server.drain(), 1);
    assert_eq!(call(&gw, "/es/x", &b.token()).await, 200);
    assert_eq!(
        call(&gw, "/es/x", &a.token()).await,
        401,
        "the retired key is gone"
    );
}

#[tokio::test]
async fn forged_key_ids_cause_at_most_one_fetch_per_cooldown() {
    let a = Signer::es256("a");
    let mut server = JwksServer::start(&[a.jwk()]).await;
    let gw = jwks_gateway(&server.url, &[("es", "ES256")], "1h").await;
    server.fetches.recv().await.unwrap();
    let forger = Signer::es256("x");
    for i in 0..20 {
        assert_eq!(
            call(&gw, "/es/x", &forger.token_as(&format!("forged-{i}"))).await,
            401
        );
    }
    assert_eq!(server.drain(), 1);
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_last_good_keys() {
    let a = Signer::es256("a");
    let mut server = JwksServer::start(&[a.jwk()]).await;
    let gw = jwks_gateway(&server.url, &[("es", "ES256")], "1h").await;
    server.fetches.recv().await.unwrap();
    server.fail();
    let c = Signer::es256("c");
    assert_eq!(call(&gw, "/es/x", &c.token()).await, 401);
    assert_eq!(
        server.drain(),
        1,
        "the unknown kid did trigger a fetch, which failed"
    );
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
}

#[tokio::test]
async fn a_reload_keeps_the_key_set_of_an_unchanged_jwks_url() {
    let a = Signer::es256("a");
    let mut server = JwksServer::start(&[a.jwk()]).await;
    let cfg = jwks_config(
        &echo_upstream().await,
        &server.url,
        &[("es", "ES256")],
        "1h",
    );
    let gw = gateway(&cfg).await;
    server.fetches.recv().await.unwrap();
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
    // The issuer is down during the reload: the kept source still verifies, without a fetch.
    server.fail();
    let opts = flotilla_gateway::GatewayOptions::from_toml(&cfg).unwrap();
    gw.gateway.reload(opts).unwrap();
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
    assert_eq!(server.drain(), 0);
}

#[tokio::test]
async fn a_jwks_served_over_https_under_a_private_ca_is_trusted_through_jwks_tls() {
    use common::pki::{Ca, tls_upstream, write_temp};
    let a = Signer::es256("a");
    let ca = Ca::new();
    let doc = jwks(&[a.jwk()]);
    let router = Router::new().route("/jwks.json", axum::routing::get(move || async move { doc }));
    let port = tls_upstream(router, &ca.leaf(&["localhost"])).await;
    let ca_file = write_temp("ca.pem", &ca.cert_pem);
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"echo\"\nurls = [\"{up}\"]\n\
         [[jwt]]\nname = \"es\"\nalgorithm = \"ES256\"\n\
         jwks_url = \"https://localhost:{port}/jwks.json\"\njwks_tls = {{ ca_file = \"{ca_file}\" }}\n\
         [[routes]]\nprefix = \"/es\"\nupstream = \"echo\"\nauth = {{ jwt = \"es\" }}"
    ))
    .await;
    assert_eq!(call(&gw, "/es/x", &a.token()).await, 200);
}

#[tokio::test]
async fn a_jwks_url_over_plain_http_to_a_remote_host_is_refused() {
    let cfg =
        "[[jwt]]\nname = \"x\"\nalgorithm = \"RS256\"\njwks_url = \"http://id.example.com/jwks\"";
    let opts = flotilla_gateway::GatewayOptions::from_toml(cfg).unwrap();
    let d: Arc<dyn flotilla_discovery::Discovery> =
        Arc::new(flotilla_discovery::StaticDiscovery::new());
    let err = flotilla_gateway::Gateway::new(opts, d).unwrap_err();
    assert!(err.to_string().contains("jwt[0].jwks_url"), "{err}");
}
