//! 200 orders through the gateway with payments declining 20 % of charges, the services in
//! their own processes against a real `flotilla up`, and the orders service (which runs the
//! checkouts) SIGKILLed and restarted halfway with checkouts in flight: every order ends
//! confirmed or cancelled, the stock held equals the confirmed orders' items, and no money
//! stays taken for an order that was not confirmed.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{DEMO_TOKEN, Shop, call, place_order, settled};

const ORDERS: usize = 200;
const SKUS: [&str; 3] = ["mug", "tee", "cap"];
const STOCK: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_orders_with_a_fifth_of_payments_failing_end_consistent() {
    let mut shop = Shop::start(0.2);
    shop.ready().await;
    let gw = Arc::new(shop.gateway.clone());
    for sku in SKUS {
        let body = json!({ "sku": sku, "name": sku, "price": 500, "stock": STOCK });
        let (status, _, p) = call(
            Method::POST,
            &format!("{gw}/api/products"),
            Some(body),
            Some(DEMO_TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
    }
    let mut users = Vec::new();
    for n in 0..8 {
        let body = json!({ "name": format!("Client {n}"), "email": format!("c{n}@example.com") });
        let (status, _, u) = call(
            Method::POST,
            &format!("{gw}/api/users"),
            Some(body),
            Some(DEMO_TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{u}");
        users.push(u["id"].as_str().expect("an id").to_owned());
    }
    let users = Arc::new(users);
    let mut orders = place_all(&gw, &users, 0..ORDERS / 2).await;
    // The checkouts just started may still be running: they resume from their streams.
    let pending = format!("{}/orders?status=pending", shop.service("orders"));
    let in_flight = call(Method::GET, &pending, None, None).await.2;
    let in_flight = in_flight.as_array().map_or(0, Vec::len);
    shop.crash_restart("orders", &[]).await;
    // Placing resumes once the gateway routes to the new instance again.
    let list = format!("{gw}/api/orders");
    support::eventually(|| async {
        call(Method::GET, &list, None, None).await.0 == StatusCode::OK
    })
    .await;
    orders.extend(place_all(&gw, &users, ORDERS / 2..ORDERS).await);

    let mut confirmed_items: BTreeMap<String, u64> = BTreeMap::new();
    let mut status_of = BTreeMap::new();
    for id in &orders {
        let order = settled(&gw, id).await;
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        assert!(status == "confirmed" || status == "cancelled", "{order}");
        if status == "confirmed" {
            for item in order["items"].as_array().into_iter().flatten() {
                let sku = item["sku"].as_str().unwrap_or_default().to_owned();
                *confirmed_items.entry(sku).or_default() += item["quantity"].as_u64().unwrap_or(0);
            }
        }
        status_of.insert(id.clone(), status);
    }
    let cancelled = status_of.values().filter(|s| *s == "cancelled").count();
    eprintln!(
        "{ORDERS} orders: {} confirmed, {cancelled} cancelled; {in_flight} pending at the SIGKILL",
        ORDERS - cancelled
    );
    assert!(
        (10..=80).contains(&cancelled),
        "about a fifth declined, got {cancelled}"
    );

    for sku in SKUS {
        let url = format!("{}/products/{sku}", shop.service("inventory"));
        let (_, _, p) = call(Method::GET, &url, None, None).await;
        let held = confirmed_items.get(sku).copied().unwrap_or(0);
        assert_eq!(
            p["reserved"],
            json!(held),
            "{sku}: held stock is the confirmed items: {p}"
        );
        assert_eq!(
            p["available"],
            json!(STOCK - held),
            "{sku}: the rest is free: {p}"
        );
    }
    check_payments(&shop, &status_of).await;
    // Every cancellation was a declined payment, which the orders service heard about.
    for (id, _) in status_of.iter().filter(|(_, s)| *s == "cancelled") {
        let url = format!("{gw}/api/orders/{id}");
        support::eventually(|| async {
            call(Method::GET, &url, None, None).await.2["payment"] == "failed"
        })
        .await;
    }
}

/// Places orders `range` from 8 concurrent clients (one user each), each one to three lines.
async fn place_all(
    gw: &Arc<String>,
    users: &Arc<Vec<String>>,
    range: std::ops::Range<usize>,
) -> Vec<String> {
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let (gw, range, users) = (Arc::clone(gw), range.clone(), Arc::clone(users));
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in (range.start + worker..range.end).step_by(8) {
                    let items: Vec<Value> = (0..=n % 3)
                        .map(|i| json!({ "sku": SKUS[(n + i) % 3], "quantity": 1 + (n + i) % 4 }))
                        .collect();
                    ids.push(place_order(&gw, &users[worker], json!(items)).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("a client task"));
    }
    ids
}

/// Every payment belongs to a placed order; money is taken (captured, not refunded) exactly
/// for the confirmed orders.
async fn check_payments(shop: &Shop, status_of: &BTreeMap<String, String>) {
    let url = format!("{}/payments", shop.service("payments"));
    let mut captured = BTreeMap::new();
    support::eventually(|| async {
        let (_, _, all) = call(Method::GET, &url, None, None).await;
        let n = all.as_array().map_or(0, Vec::len);
        n >= status_of.len()
    })
    .await;
    let (_, _, all) = call(Method::GET, &url, None, None).await;
    for p in all.as_array().into_iter().flatten() {
        let Some(order) = p["order_id"].as_str() else {
            assert_eq!(p["status"], "voided", "a payment without an order: {p}");
            continue;
        };
        let status = status_of
            .get(order)
            .unwrap_or_else(|| panic!("a payment for no order: {p}"));
        if p["status"] == "captured" {
            assert_eq!(status, "confirmed", "a charge left unrefunded: {p}");
            *captured.entry(order.to_owned()).or_insert(0) += 1;
        }
    }
    for (order, status) in status_of {
        let taken = captured.get(order).copied().unwrap_or(0);
        let expected = usize::from(status == "confirmed");
        assert_eq!(
            taken, expected,
            "order {order} ({status}) has {taken} charges taken"
        );
    }
}
