//! Rate limits, body limits and authentication at the edge.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::Digest;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn auth_gateway() -> Running {
    let up = echo_upstream().await;
    let key_hash = hex::encode(sha2::Sha256::digest(b"k-live-123"));
    let cfg = format!(
        r#"
        [[upstreams]]
        name = "echo"
        urls = ["{up}"]

        [[jwt]]
        name = "hs"
        algorithm = "HS256"
        secret = "{SECRET}"
        issuer = "https://issuer.test"
        audience = ["api"]

        [[jwt]]
        name = "rs"
        algorithm = "RS256"
        public_key_file = "{rsa}"

        [[jwt]]
        name = "es"
        algorithm = "ES256"
        public_key_file = "{es}"

        [[jwt]]
        name = "ed"
        algorithm = "EdDSA"
        public_key_file = "{ed}"

        [[api_keys]]
        name = "billing"
        hash = "sha256:{key_hash}"

        [[routes]]
        prefix = "/hs"
        upstream = "echo"
        auth = {{ jwt = "hs", require_claims = {{ scope = "read" }}, forward_claims = {{ sub = "x-user" }} }}

        [[routes]]
        prefix = "/rs"
        upstream = "echo"
        auth = {{ jwt = "rs" }}

        [[routes]]
        prefix = "/es"
        upstream = "echo"
        auth = {{ jwt = "es" }}

        [[routes]]
        prefix = "/ed"
        upstream = "echo"
        auth = {{ jwt = "ed" }}

        [[routes]]
        prefix = "/key"
        upstream = "echo"
        auth = {{ api_key = true }}

        [[routes]]
        prefix = "/relay"
        upstream = "echo"
        auth = {{ jwt = "hs", api_key = true, forward_credentials = true }}

        [[routes]]
        prefix = "/open"
        upstream = "echo"
        "#,
        rsa = fixture("rsa_public.pem"),
        es = fixture("ec_public.pem"),
        ed = fixture("ed_public.pem"),
    );
    gateway(&cfg).await
}

fn hs_token(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "alice", "iss": "https://issuer.test", "aud": "api", "exp": now() + 300, "scope": "read write"})
}

async fn bearer(gw: &Running, path: &str, token: &str) -> Resp {
    get(gw, path, &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn valid_jwts_pass_and_claims_are_forwarded_as_headers() {
    let gw = auth_gateway().await;
    let r = bearer(&gw, "/hs/x", &hs_token(good_claims(), SECRET)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-user"], "alice");
    // A client cannot forge the claim header itself.
    let r = get(
        &gw,
        "/hs/x",
        &[
            (
                "authorization",
                &format!("Bearer {}", hs_token(good_claims(), SECRET)),
            ),
            ("x-user", "mallory"),
        ],
    )
    .await;
    assert_eq!(r.json()["headers"]["x-user"], "alice");
    for (path, alg, file) in [
        ("/rs/x", Algorithm::RS256, "rsa_private.pem"),
        ("/es/x", Algorithm::ES256, "ec_private.pem"),
        ("/ed/x", Algorithm::EdDSA, "ed_private.pem"),
    ] {
        let pem = std::fs::read(fixture(file)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let t = jsonwebtoken::encode(
            &Header::new(alg),
            &json!({"sub": "b", "exp": now() + 60}),
            &key,
        )
        .unwrap();
        assert_eq!(bearer(&gw, path, &t).await.status, 200, "{alg:?}");
    }
}

#[tokio::test]
async fn wrong_key_expired_alg_none_and_algorithm_confusion_are_refused() {
    let gw = auth_gateway().await;
    let wrong = hs_token(good_claims(), "another-secret-another-secret-another");
    let mut expired = good_claims();
    expired["exp"] = json!(now() - 3600);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good_claims().to_string())
    );
    // HS256 "signed" with the RSA public key as the HMAC secret.
    let public = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "m", "exp": now() + 60}),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    for (path, token) in [
        ("/hs/x", wrong),
        ("/hs/x", hs_token(expired, SECRET)),
        ("/hs/x", none),
        ("/rs/x", confused),
    ] {
        let r = bearer(&gw, path, &token).await;
        assert_eq!(r.status, 401, "{path} {token}");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let missing = get(&gw, "/hs/x", &[]).await;
    assert_eq!(missing.status, 401);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn missing_required_claims_are_403() {
    let gw = auth_gateway().await;
    let mut c = good_claims();
    c["scope"] = json!("write");
    assert_eq!(bearer(&gw, "/hs/x", &hs_token(c, SECRET)).await.status, 403);
}

#[tokio::test]
async fn api_keys_are_checked_against_hashes() {
    let gw = auth_gateway().await;
    let ok = get(&gw, "/key/x", &[("x-api-key", "k-live-123")]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["headers"]["x-api-key-name"], "billing");
    assert_eq!(
        get(&gw, "/key/x", &[("x-api-key", "k-live-124")])
            .await
            .status,
        401
    );
    assert_eq!(get(&gw, "/key/x", &[]).await.status, 401);
}

#[tokio::test]
async fn verified_credentials_reach_the_upstream_only_where_the_route_forwards_them() {
    let gw = auth_gateway().await;
    let token = format!("Bearer {}", hs_token(good_claims(), SECRET));
    let r = get(&gw, "/hs/x", &[("authorization", &token)]).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"].get("authorization").is_none());
    let r = get(&gw, "/key/x", &[("x-api-key", "k-live-123")]).await;
    assert!(r.json()["headers"].get("x-api-key").is_none());
    let r = get(&gw, "/relay/x", &[("authorization", &token)]).await;
    assert_eq!(r.json()["headers"]["authorization"], token.as_str());
    let r = get(&gw, "/relay/x", &[("x-api-key", "k-live-123")]).await;
    assert_eq!(r.json()["headers"]["x-api-key"], "k-live-123");
    // A route without auth does not consume credentials: they pass through untouched.
    let r = get(&gw, "/open/x", &[("authorization", "Basic dXNlcg==")]).await;
    assert_eq!(r.json()["headers"]["authorization"], "Basic dXNlcg==");
}

#[tokio::test]
async fn identity_headers_sent_by_clients_are_removed_on_every_route() {
    let gw = auth_gateway().await;
    let forged = [("x-user", "admin"), ("x-api-key-name", "billing")];
    let r = get(&gw, "/open/x", &forged).await;
    assert_eq!(r.status, 200);
    let headers = &r.json()["headers"];
    assert!(headers.get("x-user").is_none(), "{headers}");
    assert!(headers.get("x-api-key-name").is_none(), "{headers}");
    // On an API-key route the forged claim header is dropped and the real key name set.
    let mut h = forged.to_vec();
    h.push(("x-api-key", "k-live-123"));
    let r = get(&gw, "/key/x", &h).await;
    assert!(r.json()["headers"].get("x-user").is_none());
    assert_eq!(r.json()["headers"]["x-api-key-name"], "billing");
}

#[tokio::test]
async fn over_the_limit_gets_429_with_retry_after_and_ratelimit_headers() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\nrate_limit = {{ requests = 3, per = \"minute\" }}"
    ))
    .await;
    for left in [2, 1, 0] {
        let r = get(&gw, "/x", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["ratelimit"],
            format!("\"route\";r={left};t=0").as_str()
        );
        assert_eq!(r.headers["ratelimit-policy"], "\"route\";q=3;w=60");
    }
    let r = get(&gw, "/x", &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one request every 20 s: {retry}");
    assert!(
        r.headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"route\";r=0;t=")
    );
}

#[tokio::test]
async fn bodies_over_the_route_limit_are_413() {
    let up = echo_upstream().await;
    let gw = gateway(&format!(
        "[[upstreams]]\nname = \"u\"\nurls = [\"{up}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"u\"\nmax_body_bytes = 1024"
    ))
    .await;
    let req = |n: usize| {
        http::Request::post("/x")
            .body(Full::new(Bytes::from(vec![b'a'; n])))
            .unwrap()
    };
    assert_eq!(send(&gw, req(1024)).await.status, 200);
    assert_eq!(send(&gw, req(1025)).await.status, 413);
}
