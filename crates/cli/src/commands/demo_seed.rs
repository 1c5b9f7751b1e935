//! Seeding the demo shop's products once its services run, then printing where everything is.
//! Seeding is idempotent: a product that already exists (a second run on the same data
//! directory) answers 409 and keeps its stock.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::demo::{Banner, DEMO_TOKEN};
use super::demo_http::Http;
use crate::out;

/// The shop's products: sku, name, price in cents, stock. The espresso machine costs more than
/// the demo card's limit (1,000.00), so ordering it always shows a failed payment compensated.
pub(crate) const PRODUCTS: [(&str, &str, u64, u64); 4] = [
    ("mug", "Mug", 1200, 100),
    ("tee", "T-shirt", 2500, 100),
    ("poster", "Poster", 800, 100),
    ("espresso-machine", "Espresso machine", 149_900, 10),
];

/// Waits for the inventory service and the gateway's routes, seeds the products and prints
/// the banner; gives up quietly when the platform stops first.
pub(crate) async fn seed_then_announce(banner: &Banner, stop: CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        result = seed(banner) => match result {
            Ok(()) => print_banner(banner),
            Err(e) => tracing::error!(error = %e, "cannot seed the demo shop"),
        }
    }
}

async fn seed(banner: &Banner) -> anyhow::Result<()> {
    let http = Http::new(Some(DEMO_TOKEN.to_owned()));
    let inventory = banner.service("inventory");
    wait_for(&http, &format!("{inventory}/ready")).await;
    for (sku, name, price, stock) in PRODUCTS {
        let body = json!({ "sku": sku, "name": name, "price": price, "stock": stock });
        let (status, answer) = http.post(&format!("{inventory}/products"), body).await?;
        match status {
            StatusCode::CREATED => tracing::info!(sku, "demo product created"),
            StatusCode::CONFLICT => tracing::debug!(sku, "demo product already there"),
            other => anyhow::bail!("creating product {sku}: {other} {answer}"),
        }
    }
    // The list is a projection that follows the product streams; the gateway caches it, so
    // the first list it fetches must already hold every product.
    wait_for_catalog(&http, &format!("{inventory}/products")).await;
    // Every route answers once the gateway has found each service in the registry.
    for path in ["/api/products", "/api/orders", "/api/users/ada"] {
        wait_for(&http, &format!("{}{path}", banner.gateway)).await;
    }
    tracing::info!("demo ready");
    Ok(())
}

/// Polls the inventory's product list until it holds every seeded product.
async fn wait_for_catalog(http: &Http, url: &str) {
    loop {
        if let Ok((StatusCode::OK, list)) = http.get(url).await {
            let listed = |sku: &str| {
                list.as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["sku"].as_str() == Some(sku)))
            };
            if PRODUCTS.iter().all(|(sku, ..)| listed(sku)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `url` until it answers 200 (or, for a single user, the users service's own 404).
async fn wait_for(http: &Http, url: &str) {
    loop {
        if let Ok((status, _)) = http.get(url).await
            && (status == StatusCode::OK || status == StatusCode::NOT_FOUND)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_banner(b: &Banner) {
    let services: Vec<String> = b
        .services
        .iter()
        .map(|(name, port)| format!("{name} :{port}"))
        .collect();
    let gw = &b.gateway;
    let url = match b.control_plane.as_str() {
        "http://127.0.0.1:4400" => String::new(),
        other => format!(" --url {other}"),
    };
    let lines = [
        "Flotilla is up with the example shop (docs/getting-started.md, docs/shop.md).".into(),
        String::new(),
        format!("  gateway        {gw}  (/api/users, /api/orders, /api/products)"),
        format!("  dashboard      {}/ui/", b.control_plane),
        format!("  control plane  {}", b.control_plane),
        format!(
            "  services       {} (logs in {})",
            services.join(", "),
            b.logs.display()
        ),
        "  demo JWT key   HS256, secret flotilla-shop-demo-key-not-a-secret-0001, issuer \
         flotilla-shop-demo (a demo key: anyone can mint tokens with it)"
            .into(),
        String::new(),
        "Try:".into(),
        format!("  export TOKEN={DEMO_TOKEN}"),
        format!("  curl -s {gw}/api/products"),
        format!("  flotilla services ls{url}"),
        format!("  flotilla demo load --gateway {gw} --rate 20 --duration 30s"),
        String::new(),
        "Ctrl-C stops the shop, then the platform.".into(),
    ];
    for line in lines {
        out::line(line);
    }
}
