//! The inventory service: products with stock, reservations keyed by `Idempotency-Key`, and
//! product reads a cache may keep (`Cache-Control: public`, `ETag`, 304 on `If-None-Match`).

mod catalog;
mod product;
mod reservation;
mod reserve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla::eventsourcing::{Metadata, Repository};
use flotilla::platform::Platform;
use flotilla::{Json, MicroserviceBuilder, Problem};
use serde::Deserialize;

pub use catalog::{Catalog, ProductView};
pub use product::Product;
pub use reservation::{Line, Reservation};

use crate::ShopConfig;
use crate::http::{CONFLICT_RETRIES, invalid, store_problem};

pub(crate) struct Inventory {
    products: Repository<Product>,
    reservations: Repository<Reservation>,
    catalog: Catalog,
    max_age: Duration,
}

/// Adds the inventory routes and the catalog projection to `builder`.
pub fn service(
    builder: MicroserviceBuilder,
    platform: &Platform,
    shop: &ShopConfig,
) -> MicroserviceBuilder {
    let store = platform.event_store();
    let catalog = Catalog::default();
    let state = Arc::new(Inventory {
        products: Repository::new(store.clone())
            .snapshot_every(100)
            .retries(CONFLICT_RETRIES),
        reservations: Repository::new(store.clone()),
        catalog: catalog.clone(),
        max_age: shop.product_max_age,
    });
    let routes = Router::new()
        .route("/products", get(list).post(create))
        .route("/products/{sku}", get(read))
        .route("/products/{sku}/stock", post(restock))
        .route("/reservations", post(reserve::reserve))
        .route("/reservations/{key}", get(reserve::read))
        .route("/reservations/{key}/release", post(reserve::release))
        .with_state(state);
    builder
        .description("products and stock of the example shop")
        .memory_projection(store, catalog::CatalogProjection(catalog))
        .routes(routes)
}

/// `POST /products` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    sku: String,
    name: String,
    /// Cents.
    price: u64,
    #[serde(default)]
    stock: u64,
}

/// `POST /products/{sku}/stock` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Restock {
    quantity: u64,
}

fn valid_sku(sku: &str) -> bool {
    (1..=40).contains(&sku.len())
        && sku
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn refused(e: product::Refused) -> Problem {
    match e {
        product::Refused::NotFound => Problem::not_found(e.to_string()),
        _ => Problem::new(StatusCode::CONFLICT).detail(e.to_string()),
    }
}

async fn create(
    State(s): State<Arc<Inventory>>,
    Json(input): Json<NewProduct>,
) -> Result<Response, Problem> {
    if !valid_sku(&input.sku) {
        return Err(invalid("sku", "must be 1 to 40 of a-z, 0-9 and -"));
    }
    if input.name.trim().is_empty() {
        return Err(invalid("name", "must not be blank"));
    }
    if input.price == 0 {
        return Err(invalid("price", "must be at least 1 (cents)"));
    }
    let command = product::Command::Create {
        name: input.name,
        price: input.price,
        stock: input.stock,
    };
    let handled = s
        .products
        .handle(&input.sku, &command, Metadata::default())
        .await
        .map_err(store_problem)?
        .map_err(refused)?;
    let version = handled.appended.map_or(0, |a| a.last_version);
    let view = ProductView::of(&input.sku, &handled.state, version);
    let location = format!("/products/{}", input.sku);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(view),
    )
        .into_response())
}

async fn restock(
    State(s): State<Arc<Inventory>>,
    Path(sku): Path<String>,
    Json(input): Json<Restock>,
) -> Result<axum::Json<ProductView>, Problem> {
    if input.quantity == 0 {
        return Err(invalid("quantity", "must be at least 1"));
    }
    let command = product::Command::Restock {
        quantity: input.quantity,
    };
    let handled = s
        .products
        .handle(&sku, &command, Metadata::default())
        .await
        .map_err(store_problem)?
        .map_err(refused)?;
    let version = handled.appended.map_or(0, |a| a.last_version);
    Ok(axum::Json(ProductView::of(&sku, &handled.state, version)))
}

async fn list(State(s): State<Arc<Inventory>>) -> Response {
    let products = s.catalog.list();
    let etag = format!(
        "\"list-{}\"",
        products.iter().map(|p| p.version).sum::<u64>()
    );
    cacheable(&s, etag, axum::Json(products).into_response())
}

/// `GET /products/{sku}`: read from the product's stream, tagged with its version, so a
/// client or the gateway revalidates with `If-None-Match` and gets 304 until it changes.
async fn read(
    State(s): State<Arc<Inventory>>,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let loaded = s.products.load(&sku).await.map_err(store_problem)?;
    let Some(version) = loaded.version.filter(|_| loaded.state.exists) else {
        return Err(Problem::not_found(format!("no product {sku:?}")));
    };
    let etag = format!("\"{sku}-v{version}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let response = match unchanged {
        true => StatusCode::NOT_MODIFIED.into_response(),
        false => axum::Json(ProductView::of(&sku, &loaded.state, version)).into_response(),
    };
    Ok(cacheable(&s, etag, response))
}

fn cacheable(s: &Inventory, etag: String, mut response: Response) -> Response {
    let headers = response.headers_mut();
    let control = format!("public, max-age={}", s.max_age.as_secs());
    if let Ok(v) = HeaderValue::from_str(&control) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    response
}
