//! JWT claims a configured validator requires (`iss`, `aud`, `exp`), the `crit` header
//! (RFC 7515 §4.1.11) and the case-insensitive `Bearer` scheme (RFC 9110 §11.1).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn jwt_gateway() -> Running {
    let up = echo_upstream().await;
    gateway(&format!(
        r#"
        [[upstreams]]
        name = "echo"
        urls = ["{up}"]

        [[jwt]]
        name = "strict"
        algorithm = "HS256"
        secret = "{SECRET}"
        issuer = "https://issuer.test"
        audience = ["api"]

        [[jwt]]
        name = "plain"
        algorithm = "HS256"
        secret = "{SECRET}"

        [[routes]]
        prefix = "/strict"
        upstream = "echo"
        auth = {{ jwt = "strict" }}

        [[routes]]
        prefix = "/plain"
        upstream = "echo"
        auth = {{ jwt = "plain" }}
        "#
    ))
    .await
}

fn token_with(header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn token(claims: &Value) -> String {
    token_with(Header::new(Algorithm::HS256), claims)
}

async fn call(gw: &Running, path: &str, authorization: &str) -> Resp {
    get(gw, path, &[("authorization", authorization)]).await
}

#[tokio::test]
async fn configured_issuer_and_audience_are_required_claims() {
    let gw = jwt_gateway().await;
    let exp = now() + 300;
    let full = json!({"iss": "https://issuer.test", "aud": "api", "exp": exp});
    assert_eq!(
        call(&gw, "/strict", &format!("Bearer {}", token(&full)))
            .await
            .status,
        200
    );
    for (what, claims) in [
        ("no iss", json!({"aud": "api", "exp": exp})),
        ("no aud", json!({"iss": "https://issuer.test", "exp": exp})),
        ("only exp", json!({"exp": exp})),
    ] {
        let r = call(&gw, "/strict", &format!("Bearer {}", token(&claims))).await;
        assert_eq!(r.status, 401, "{what}");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
}

#[tokio::test]
async fn exp_is_required_even_when_nothing_else_is() {
    let gw = jwt_gateway().await;
    let with_exp = token(&json!({"sub": "a", "exp": now() + 300}));
    assert_eq!(
        call(&gw, "/plain", &format!("Bearer {with_exp}"))
            .await
            .status,
        200
    );
    let forever = token(&json!({"sub": "a"}));
    assert_eq!(
        call(&gw, "/plain", &format!("Bearer {forever}"))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_token_with_a_crit_header_is_refused() {
    let gw = jwt_gateway().await;
    let claims = json!({"sub": "a", "exp": now() + 300});
    for crit in [vec!["b64".to_owned()], vec!["exp".to_owned()], vec![]] {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(crit.clone());
        let r = call(
            &gw,
            "/plain",
            &format!("Bearer {}", token_with(header, &claims)),
        )
        .await;
        assert_eq!(r.status, 401, "crit {crit:?}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let gw = jwt_gateway().await;
    let t = token(&json!({"sub": "a", "exp": now() + 300}));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = call(&gw, "/plain", &format!("{scheme} {t}")).await;
        assert_eq!(r.status, 200, "{scheme}");
    }
    for not_bearer in [format!("Basic {t}"), format!("Bearer{t}"), t.clone()] {
        assert_eq!(
            call(&gw, "/plain", &not_bearer).await.status,
            401,
            "{not_bearer}"
        );
    }
}
