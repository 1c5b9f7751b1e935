//! The payments service: charges and refunds keyed by idempotency keys, against a pretend
//! provider with a configurable failure rate and latency (`[shop] payment_failure_rate`,
//! `payment_latency`); `payment.processed` and `payment.failed` on the bus.

mod ledger;
mod payment;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla::events::Bus;
use flotilla::eventsourcing::{Metadata, Repository};
use flotilla::platform::Platform;
use flotilla::{Json, MicroserviceBuilder, Problem};
use serde::Deserialize;
use serde_json::json;

pub use ledger::Ledger;
pub use payment::Payment;

use crate::ShopConfig;
use crate::http::{idempotency_key, invalid, publish, store_problem};

struct Payments {
    repo: Repository<Payment>,
    bus: Bus,
    ledger: Ledger,
    failure_rate: f64,
    latency: Duration,
    card_limit: u64,
    /// Seeds the provider's decisions; a key always gets the same one in this process.
    dice: std::collections::hash_map::RandomState,
}

/// Adds the payments routes and the ledger projection to `builder`.
pub fn service(
    builder: MicroserviceBuilder,
    platform: &Platform,
    shop: &ShopConfig,
) -> MicroserviceBuilder {
    let store = platform.event_store();
    let ledger = Ledger::default();
    let state = Arc::new(Payments {
        repo: Repository::new(store.clone()),
        bus: platform.bus(),
        ledger: ledger.clone(),
        failure_rate: shop.payment_failure_rate,
        latency: shop.payment_latency,
        card_limit: shop.payment_card_limit,
        dice: Default::default(),
    });
    let routes = Router::new()
        .route("/payments", post(charge).get(list))
        .route("/payments/{key}", get(read))
        .route("/refunds", post(refund))
        .with_state(state);
    builder
        .description("charges and refunds of the example shop")
        .memory_projection(store, ledger::LedgerProjection(ledger))
        .routes(routes)
}

#[derive(Debug, Deserialize)]
struct Charge {
    order_id: String,
    /// Cents.
    amount: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refund {
    payment_key: String,
}

#[derive(Debug, Deserialize)]
struct Filter {
    order_id: Option<String>,
}

pub(crate) fn view(key: &str, payment: &Payment) -> serde_json::Value {
    let mut v = json!(payment);
    v["key"] = json!(key);
    v
}

/// `POST /payments`: the first call under a key asks the provider and records its answer;
/// every later call under that key answers (and re-announces) what was recorded.
async fn charge(
    State(s): State<Arc<Payments>>,
    headers: HeaderMap,
    Json(body): Json<Charge>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    if body.order_id.is_empty() {
        return Err(invalid("order_id", "must not be empty"));
    }
    if body.amount == 0 {
        return Err(invalid("amount", "must be at least 1 (cents)"));
    }
    let loaded = s.repo.load(&key).await.map_err(store_problem)?;
    if loaded.state == Payment::Absent {
        tokio::time::sleep(s.latency).await;
        let command = match s.declines(&key, body.amount) {
            Some(reason) => payment::Command::Decline {
                order_id: body.order_id,
                reason: reason.into(),
            },
            None => payment::Command::Capture {
                order_id: body.order_id,
                amount: body.amount,
            },
        };
        // A concurrent call under the same key may have recorded first: answer its outcome.
        let handled = s.repo.handle(&key, &command, Metadata::default()).await;
        let _ = handled.map_err(store_problem)?;
    }
    let state = s.repo.load(&key).await.map_err(store_problem)?.state;
    announce(&s, &key, &state).await?;
    Ok(answer(&key, &state))
}

impl Payments {
    /// Why the provider declines this charge, if it does.
    fn declines(&self, key: &str, amount: u64) -> Option<&'static str> {
        let roll = self.dice.hash_one(key) as f64 / u64::MAX as f64;
        if amount > self.card_limit {
            Some("the amount is over the card's limit")
        } else if roll < self.failure_rate {
            Some("the card was declined")
        } else {
            None
        }
    }
}

/// Publishes the outcome under an id derived from the key, so announcing it again after a
/// retry is deduplicated by the bus rather than delivered twice.
async fn announce(s: &Payments, key: &str, state: &Payment) -> Result<(), Problem> {
    let (topic, id) = match state {
        Payment::Captured { .. } => ("payment.processed", format!("payment-{key}-captured")),
        Payment::Declined { .. } => ("payment.failed", format!("payment-{key}-declined")),
        _ => return Ok(()),
    };
    publish(&s.bus, "payments", topic, id, view(key, state)).await
}

/// 201 for a capture, 402 for a decline (a permanent answer: no retry changes it), 409 when
/// the key was refunded or voided before this charge.
fn answer(key: &str, state: &Payment) -> Response {
    match state {
        Payment::Captured { .. } => {
            (StatusCode::CREATED, axum::Json(view(key, state))).into_response()
        }
        Payment::Declined { reason, .. } => Problem::new(StatusCode::PAYMENT_REQUIRED)
            .detail(format!("payment {key} declined: {reason}"))
            .into_response(),
        _ => Problem::new(StatusCode::CONFLICT)
            .detail(format!("payment {key} was refunded or voided"))
            .into_response(),
    }
}

/// `POST /refunds`: gives back what the charge under `payment_key` took. Idempotent by that
/// key: refunding twice, or a charge that was declined, changes nothing; refunding a charge
/// that has not arrived yet voids its key so it cannot be taken afterwards.
async fn refund(
    State(s): State<Arc<Payments>>,
    Json(body): Json<Refund>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let handled = s
        .repo
        .handle(
            &body.payment_key,
            &payment::Command::Refund,
            Metadata::default(),
        )
        .await
        .map_err(store_problem)?
        .map_err(|e| Problem::new(StatusCode::CONFLICT).detail(e.to_string()))?;
    if let (Some(appended), Payment::Refunded { .. }) = (&handled.appended, &handled.state) {
        let id = format!(
            "payment-{}-refunded-v{}",
            body.payment_key, appended.last_version
        );
        let data = view(&body.payment_key, &handled.state);
        publish(&s.bus, "payments", "payment.refunded", id, data).await?;
    }
    Ok(axum::Json(view(&body.payment_key, &handled.state)))
}

async fn read(
    State(s): State<Arc<Payments>>,
    Path(key): Path<String>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let loaded = s.repo.load(&key).await.map_err(store_problem)?;
    match loaded.state {
        Payment::Absent => Err(Problem::not_found(format!("no payment {key:?}"))),
        state => Ok(axum::Json(view(&key, &state))),
    }
}

async fn list(
    State(s): State<Arc<Payments>>,
    Query(filter): Query<Filter>,
) -> axum::Json<Vec<serde_json::Value>> {
    axum::Json(s.ledger.list(filter.order_id.as_deref()))
}
