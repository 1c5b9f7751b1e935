//! Reserving and releasing stock. A reservation is keyed by the caller's `Idempotency-Key`:
//! each product holds units under that key at most once, and the `Reservation` stream answers
//! a repeat with the first outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla::eventsourcing::Metadata;
use flotilla::{Json, Problem};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::reservation::{self, Ended, Line, Reservation};
use super::{Inventory, product, valid_sku};
use crate::http::{idempotency_key, invalid, store_problem};

/// One requested line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Item {
    /// The product.
    sku: String,
    /// Units, 1 or more.
    quantity: u64,
}

/// `POST /reservations` body.
#[derive(Debug, Deserialize)]
pub(super) struct Reserve {
    items: Vec<Item>,
}

/// `POST /reservations/{key}/release` body (optional): the lines the reserve asked for, so a
/// reserve whose answer was lost before it recorded anything is undone too.
#[derive(Debug, Default, Deserialize)]
struct Release {
    #[serde(default)]
    items: Vec<Item>,
}

/// Merges repeated skus and checks every line, naming the first bad one.
fn lines(items: &[Item]) -> Result<BTreeMap<String, u64>, Problem> {
    if items.is_empty() {
        return Err(invalid("items", "must name at least one product"));
    }
    let mut merged = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if !valid_sku(&item.sku) {
            return Err(invalid(&format!("items[{i}].sku"), "is not a product id"));
        }
        if item.quantity == 0 || item.quantity > 1000 {
            return Err(invalid(
                &format!("items[{i}].quantity"),
                "must be 1 to 1000",
            ));
        }
        *merged.entry(item.sku.clone()).or_insert(0) += item.quantity;
    }
    Ok(merged)
}

pub(super) async fn reserve(
    State(s): State<Arc<Inventory>>,
    headers: HeaderMap,
    Json(body): Json<Reserve>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let wanted = lines(&body.items)?;
    let loaded = s.reservations.load(&key).await.map_err(store_problem)?;
    if loaded.state != Reservation::Absent {
        return Ok(answer(&key, &loaded.state));
    }
    let mut held = Vec::new();
    for (sku, quantity) in &wanted {
        let command = product::Command::Reserve {
            key: key.clone(),
            quantity: *quantity,
        };
        let handled = s.products.handle(sku, &command, Metadata::default()).await;
        match handled.map_err(store_problem)? {
            Ok(h) => held.push(Line {
                sku: sku.clone(),
                quantity: *quantity,
                price: h.state.price,
            }),
            Err(refused) => {
                undo(&s, &key, held.iter().map(|l| l.sku.as_str())).await?;
                let reason = format!("{sku}: {refused}");
                // A release that overtook us already ended it: its answer stands.
                let _ = record(&s, &key, reservation::Command::Refuse(reason)).await?;
                let state = s.reservations.load(&key).await.map_err(store_problem)?;
                return Ok(answer(&key, &state.state));
            }
        }
    }
    let skus: Vec<String> = held.iter().map(|l| l.sku.clone()).collect();
    if let Err(Ended(how)) = record(&s, &key, reservation::Command::Hold(held)).await? {
        // Released while we were reserving (the caller gave up on us): give the stock back.
        if how == "released" {
            undo(&s, &key, skus.iter().map(String::as_str)).await?;
        }
    }
    let state = s.reservations.load(&key).await.map_err(store_problem)?;
    Ok(answer(&key, &state.state))
}

pub(super) async fn read(
    State(s): State<Arc<Inventory>>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let loaded = s.reservations.load(&key).await.map_err(store_problem)?;
    match loaded.state {
        Reservation::Absent => Err(Problem::not_found(format!("no reservation {key:?}"))),
        state => Ok(axum::Json(view(&key, &state)).into_response()),
    }
}

/// Frees a reservation's stock. Always succeeds when the store answers: releasing what was
/// never held, or twice, leaves nothing to do. The tombstone is written first so a reserve
/// still running under this key undoes itself instead of holding stock afterwards.
pub(super) async fn release(
    State(s): State<Arc<Inventory>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let asked: Release = match body.is_empty() {
        true => Release::default(),
        false => serde_json::from_slice(&body)
            .map_err(|e| invalid("items", format!("does not decode: {e}")))?,
    };
    let before = s.reservations.load(&key).await.map_err(store_problem)?;
    let _ = record(&s, &key, reservation::Command::Release).await?;
    let mut skus: Vec<&str> = asked.items.iter().map(|i| i.sku.as_str()).collect();
    if let Reservation::Held { lines } = &before.state {
        skus.extend(lines.iter().map(|l| l.sku.as_str()));
    }
    skus.sort_unstable();
    skus.dedup();
    undo(&s, &key, skus.into_iter()).await?;
    let after = s.reservations.load(&key).await.map_err(store_problem)?;
    Ok(axum::Json(view(&key, &after.state)).into_response())
}

async fn record(
    s: &Inventory,
    key: &str,
    command: reservation::Command,
) -> Result<Result<(), Ended>, Problem> {
    let handled = s
        .reservations
        .handle(key, &command, Metadata::default())
        .await;
    Ok(handled.map_err(store_problem)?.map(drop))
}

/// Releases `key`'s units of each product (a product it holds nothing of is left alone).
async fn undo<'a>(
    s: &Inventory,
    key: &str,
    skus: impl Iterator<Item = &'a str>,
) -> Result<(), Problem> {
    for sku in skus {
        let command = product::Command::Release {
            key: key.to_owned(),
        };
        let handled = s.products.handle(sku, &command, Metadata::default()).await;
        match handled.map_err(store_problem)? {
            Ok(_) | Err(product::Refused::NotFound) => {}
            Err(other) => tracing::warn!(sku, error = %other, "release refused"),
        }
    }
    Ok(())
}

fn view(key: &str, state: &Reservation) -> serde_json::Value {
    let amount: u64 = match state {
        Reservation::Held { lines } => lines.iter().map(|l| l.price * l.quantity).sum(),
        _ => 0,
    };
    let mut v = json!(state);
    v["id"] = json!(key);
    v["amount"] = json!(amount);
    v
}

/// The answer to a reserve: 201 with the lines and amount when held, 409 with the reason
/// otherwise (a permanent refusal: retrying the same key answers the same).
fn answer(key: &str, state: &Reservation) -> Response {
    match state {
        Reservation::Held { .. } => {
            (StatusCode::CREATED, axum::Json(view(key, state))).into_response()
        }
        Reservation::Refused { reason } => Problem::new(StatusCode::CONFLICT)
            .detail(format!("reservation refused: {reason}"))
            .into_response(),
        _ => Problem::new(StatusCode::CONFLICT)
            .detail("the reservation was released")
            .into_response(),
    }
}
