//! docs/shop.md's walkthrough, through the gateway of a real `flotilla up`, with the four
//! services in their own processes: create a user, create products, place an order that
//! completes (stock reserved), then with payments declining everything place one that
//! compensates (stock released, order cancelled, nothing left charged).

mod support;

use hyper::{Method, StatusCode};
use serde_json::json;
use support::{DEMO_TOKEN, Shop, call, call_with, place_order, settled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_places_one_order_and_compensates_another() {
    let mut shop = Shop::start(0.0);
    shop.ready().await;
    let gw = shop.gateway.clone();

    // Writes need the demo token; validation names the field.
    let user = json!({ "name": "Ada", "email": "ada@example.com" });
    let (status, _, _) = call(
        Method::POST,
        &format!("{gw}/api/users"),
        Some(user.clone()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = json!({ "name": "Ada", "email": "ada-at-example.com" });
    let (status, _, problem) = call(
        Method::POST,
        &format!("{gw}/api/users"),
        Some(bad),
        Some(DEMO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "email", "{problem}");

    let (status, _, created) = call(
        Method::POST,
        &format!("{gw}/api/users"),
        Some(user),
        Some(DEMO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let user_id = created["id"].as_str().expect("an id").to_owned();
    // Users are streams in the platform's store: a restarted service still has them.
    shop.restart("users", &[]).await;
    let user_url = format!("{gw}/api/users/{user_id}");
    support::eventually(|| async {
        // Until the gateway sees the new instance it may answer 503; a lost user stays 404.
        call(Method::GET, &user_url, None, None).await.2["email"] == "ada@example.com"
    })
    .await;

    // Updating and deleting another account.
    let bea = json!({ "name": "Bea", "email": "bea@example.com" });
    let (_, _, bea) = call(
        Method::POST,
        &format!("{gw}/api/users"),
        Some(bea),
        Some(DEMO_TOKEN),
    )
    .await;
    let bea_url = format!("{gw}/api/users/{}", bea["id"].as_str().expect("an id"));
    let rename = json!({ "name": "Beatrice" });
    let (status, _, renamed) = call(Method::PUT, &bea_url, Some(rename), Some(DEMO_TOKEN)).await;
    assert_eq!(
        (status, renamed["name"].clone()),
        (StatusCode::OK, json!("Beatrice"))
    );
    let (status, _, _) = call(Method::DELETE, &bea_url, None, Some(DEMO_TOKEN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(Method::GET, &bea_url, None, None).await.0,
        StatusCode::NOT_FOUND
    );

    for (sku, name, price, stock) in [("mug", "Mug", 1200, 10), ("tee", "T-shirt", 2500, 5)] {
        let body = json!({ "sku": sku, "name": name, "price": price, "stock": stock });
        let (status, _, p) = call(
            Method::POST,
            &format!("{gw}/api/products"),
            Some(body),
            Some(DEMO_TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
    }

    // Product reads are cacheable and revalidate with their ETag.
    let (status, headers, _) =
        call(Method::GET, &format!("{gw}/api/products/mug"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap_or_default()
            .starts_with("public, max-age=")
    );
    let etag = headers["etag"].to_str().expect("an etag").to_owned();
    let direct = format!("{}/products/mug", shop.service("inventory"));
    let (status, _, _) = call_with(
        Method::GET,
        &direct,
        None,
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // An order for someone who is not a user is refused, naming the field.
    let ghost = json!({ "user_id": "no-such-user", "items": [{ "sku": "mug", "quantity": 1 }] });
    let (status, _, problem) = call(
        Method::POST,
        &format!("{gw}/api/orders"),
        Some(ghost),
        Some(DEMO_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "user_id", "{problem}");

    // An order that completes: its stock is reserved and it is paid.
    let items = json!([{ "sku": "mug", "quantity": 2 }, { "sku": "tee", "quantity": 1 }]);
    let id = place_order(&gw, &user_id, items).await;
    let order = settled(&gw, &id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let (_, _, mug) = call(Method::GET, &direct, None, None).await;
    assert_eq!(
        (mug["available"].clone(), mug["reserved"].clone()),
        (json!(8), json!(2)),
        "{mug}"
    );
    let payments = format!("{}/payments?order_id={id}", shop.service("payments"));
    support::eventually(|| async {
        let (_, _, paid) = call(Method::GET, &payments, None, None).await;
        paid[0]["status"] == "captured" && paid[0]["amount"] == 4900
    })
    .await;
    // payments announced it on the bus; orders heard and recorded it.
    let order_url = format!("{gw}/api/orders/{id}");
    support::eventually(|| async {
        call(Method::GET, &order_url, None, None).await.2["payment"] == "processed"
    })
    .await;

    // Payments decline everything now: the next order turns back.
    shop.restart("payments", &[("PAYMENT_FAILURE_RATE", "1")])
        .await;
    let id = place_order(&gw, &user_id, json!([{ "sku": "mug", "quantity": 3 }])).await;
    let order = settled(&gw, &id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    let (_, _, mug) = call(Method::GET, &direct, None, None).await;
    assert_eq!(
        (mug["available"].clone(), mug["reserved"].clone()),
        (json!(8), json!(2)),
        "stock released: {mug}"
    );
    let (_, _, saga) = call(
        Method::GET,
        &format!("{gw}/api/orders/{id}/saga"),
        None,
        None,
    )
    .await;
    assert_eq!(saga["status"], json!("compensated"), "{saga}");
    let payments = format!("{}/payments?order_id={id}", shop.service("payments"));
    let (_, _, charged) = call(Method::GET, &payments, None, None).await;
    let taken: Vec<_> = charged
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] == "captured")
        .collect();
    assert!(
        taken.is_empty(),
        "nothing stays charged for a cancelled order: {charged}"
    );
    support::eventually(|| async {
        let (_, _, o) = call(Method::GET, &format!("{gw}/api/orders/{id}"), None, None).await;
        o["payment"] == "failed"
    })
    .await;

    // A customer cancels while the (slow) charge is in flight: the saga turns back at once,
    // the refund voids the charge key before the charge lands (so the late charge is refused),
    // the stock is released and the order cancelled.
    shop.restart("payments", &[("PAYMENT_LATENCY", "2s")]).await;
    let id = place_order(&gw, &user_id, json!([{ "sku": "tee", "quantity": 2 }])).await;
    let saga_url = format!("{gw}/api/orders/{id}/saga");
    support::eventually(|| async {
        let (_, _, saga) = call(Method::GET, &saga_url, None, None).await;
        saga["steps"][2]["phase"]["phase"] == "running"
    })
    .await;
    let cancel = format!("{gw}/api/orders/{id}/cancel");
    let (status, _, body) = call(Method::POST, &cancel, None, Some(DEMO_TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let order = settled(&gw, &id).await;
    assert_eq!(order["status"], "cancelled", "{order}");
    let tee = format!("{}/products/tee", shop.service("inventory"));
    let (_, _, tee) = call(Method::GET, &tee, None, None).await;
    assert_eq!(
        (tee["available"].clone(), tee["reserved"].clone()),
        (json!(4), json!(1)),
        "{tee}"
    );
    let saga_id = order["saga"].as_str().expect("the order names its saga");
    let key = format!("{}/payments/{saga_id}:charge", shop.service("payments"));
    support::eventually(|| async {
        call(Method::GET, &key, None, None).await.2["status"] == "voided"
    })
    .await;
    let (_, _, saga) = call(Method::GET, &saga_url, None, None).await;
    assert_eq!(saga["status"], json!("compensated"), "{saga}");
}
