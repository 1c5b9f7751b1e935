//! The saga's participants, called directly as a retrying orchestrator would: inventory and
//! payments apply a call at most once per `Idempotency-Key`, answer a repeat with the first
//! outcome, and undo idempotently; the gateway's cache serves repeated product reads.

mod support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{DEMO_TOKEN, Shop, call, call_with};

async fn post(url: &str, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    let (status, _, body) = call_with(Method::POST, url, Some(body), None, &headers).await;
    (status, body)
}

async fn stock(shop: &Shop, sku: &str) -> (Value, Value) {
    let url = format!("{}/products/{sku}", shop.service("inventory"));
    let (_, _, p) = call(Method::GET, &url, None, None).await;
    (p["available"].clone(), p["reserved"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_reserves_charges_releases_and_refunds_apply_once() {
    let shop = Shop::start(0.0);
    shop.ready().await;
    let gw = &shop.gateway;
    let body = json!({ "sku": "pen", "name": "Pen", "price": 150, "stock": 5 });
    let (status, _, p) = call(
        Method::POST,
        &format!("{gw}/api/products"),
        Some(body),
        Some(DEMO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");

    let reservations = format!("{}/reservations", shop.service("inventory"));
    let two = json!({ "items": [{ "sku": "pen", "quantity": 2 }] });
    let (status, problem) = post(&reservations, None, two.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );
    let (first, held) = post(&reservations, Some("k1"), two.clone()).await;
    let (again, repeat) = post(&reservations, Some("k1"), two).await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!((held["amount"].clone(), &held), (json!(300), &repeat));
    assert_eq!(stock(&shop, "pen").await, (json!(3), json!(2)), "held once");

    let ten = json!({ "items": [{ "sku": "pen", "quantity": 10 }] });
    assert_eq!(
        post(&reservations, Some("k2"), ten.clone()).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        post(&reservations, Some("k2"), ten).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        stock(&shop, "pen").await,
        (json!(3), json!(2)),
        "a refusal holds nothing"
    );

    let release = format!("{reservations}/k1/release");
    for _ in 0..2 {
        let (status, released) = post(&release, None, json!({})).await;
        assert_eq!(
            (status, released["status"].clone()),
            (StatusCode::OK, json!("released"))
        );
    }
    assert_eq!(
        stock(&shop, "pen").await,
        (json!(5), json!(0)),
        "released once"
    );
    let one = json!({ "items": [{ "sku": "pen", "quantity": 1 }] });
    assert_eq!(
        post(&reservations, Some("k1"), one).await.0,
        StatusCode::CONFLICT,
        "a released key stays released"
    );

    let payments = format!("{}/payments", shop.service("payments"));
    let refunds = format!("{}/refunds", shop.service("payments"));
    let charge = json!({ "order_id": "o-1", "amount": 300 });
    let (first, paid) = post(&payments, Some("p1"), charge.clone()).await;
    let (again, repaid) = post(&payments, Some("p1"), charge.clone()).await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(
        (paid["status"].clone(), &paid),
        (json!("captured"), &repaid)
    );
    for _ in 0..2 {
        let (status, refunded) = post(&refunds, None, json!({ "payment_key": "p1" })).await;
        assert_eq!(
            (status, refunded["status"].clone()),
            (StatusCode::OK, json!("refunded"))
        );
    }
    assert_eq!(
        post(&payments, Some("p1"), charge.clone()).await.0,
        StatusCode::CONFLICT
    );
    let (_, voided) = post(&refunds, None, json!({ "payment_key": "p2" })).await;
    assert_eq!(
        voided["status"], "voided",
        "a refund before its charge voids the key"
    );
    assert_eq!(
        post(&payments, Some("p2"), charge).await.0,
        StatusCode::CONFLICT,
        "the late charge is refused"
    );

    // The gateway serves a repeated product read from its cache.
    let url = format!("{gw}/api/products/pen");
    let _ = call(Method::GET, &url, None, None).await;
    let (status, headers, _) = call(Method::GET, &url, None, None).await;
    let cache = headers
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(status, StatusCode::OK);
    assert!(
        cache.contains("hit"),
        "served from the gateway's cache: {cache:?}"
    );
}
