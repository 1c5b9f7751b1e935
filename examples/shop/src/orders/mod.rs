//! The orders service: the event-sourced `Order`, `POST /orders` placing an order through the
//! `place-order` saga, a hosted projection listing orders, and a consumer of
//! `payment.processed` / `payment.failed` recording the outcome on each order.

mod checkout;
mod list;
mod order;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla::events::{HandlerError, Typed};
use flotilla::eventsourcing::{Metadata, Repository};
use flotilla::platform::Platform;
use flotilla::{Json, MicroserviceBuilder, Problem};
use flotilla_saga::Orchestrator;
use serde::Deserialize;
use serde_json::json;

pub use checkout::PLACE_ORDER;
pub use list::OrderList;
pub use order::{Item, Order, Status};

use crate::http::{CONFLICT_RETRIES, invalid, store_problem};

struct Orders {
    repo: Repository<Order>,
    /// Finds the users service through the platform's registry (with the SDK's retries and
    /// breakers) to check that an order's user exists.
    users: flotilla::client::ServiceRef,
    list: OrderList,
    sagas: Orchestrator,
}

/// Adds the orders routes, the order list projection, the payment-event consumer and the
/// saga orchestrator (resuming unfinished checkouts) to `builder`.
pub async fn service(
    builder: MicroserviceBuilder,
    platform: &Platform,
) -> Result<MicroserviceBuilder, flotilla::Error> {
    let store = platform.event_store();
    let repo = Repository::<Order>::new(store.clone()).retries(CONFLICT_RETRIES);
    let list = OrderList::default();
    let sagas = checkout::orchestrator(platform, repo.clone()).await?;
    let state = Arc::new(Orders {
        repo: repo.clone(),
        users: platform.client().service("users"),
        list: list.clone(),
        sagas,
    });
    let routes = Router::new()
        .route("/orders", get(list_orders).post(place))
        .route("/orders/{id}", get(read))
        .route("/orders/{id}/saga", get(saga))
        .route("/orders/{id}/cancel", post(cancel))
        .with_state(state);
    Ok(builder
        .description("orders of the example shop")
        .memory_projection(store, list::OrderListProjection(list))
        .on_event(
            "payment.*",
            "shop-orders",
            move |event: Typed<PaymentFact>| record_payment(repo.clone(), event),
        )
        .routes(routes))
}

/// `POST /orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    user_id: String,
    items: Vec<Item>,
}

impl PlaceOrder {
    fn validate(&self) -> Result<(), Problem> {
        let id_like = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if self.user_id.is_empty() || self.user_id.len() > 64 || !self.user_id.chars().all(id_like)
        {
            return Err(invalid("user_id", "must be a user's id"));
        }
        if self.items.is_empty() {
            return Err(invalid("items", "must name at least one product"));
        }
        for (i, item) in self.items.iter().enumerate() {
            if item.quantity == 0 || item.quantity > 1000 {
                return Err(invalid(
                    &format!("items[{i}].quantity"),
                    "must be 1 to 1000",
                ));
            }
            if item.sku.is_empty() {
                return Err(invalid(&format!("items[{i}].sku"), "must not be empty"));
            }
        }
        Ok(())
    }
}

fn view(id: &str, order: &Order) -> serde_json::Value {
    let mut v = json!(order);
    v["id"] = json!(id);
    v
}

/// Creates the order and starts its checkout; answers 202 with where to watch it. The order
/// ends `confirmed` or `cancelled` when the saga does.
async fn place(
    State(s): State<Arc<Orders>>,
    headers: HeaderMap,
    Json(body): Json<PlaceOrder>,
) -> Result<Response, Problem> {
    body.validate()?;
    user_exists(&s, &body.user_id, &headers).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let create = order::Command::Create {
        user_id: body.user_id,
        items: body.items.clone(),
    };
    handle(&s, &id, &create).await?;
    let input = json!({ "order_id": id, "items": body.items });
    let saga = match s.sagas.start("place-order", input).await {
        Ok(saga) => saga,
        Err(e) => {
            let reason = "the checkout could not start".to_owned();
            handle(&s, &id, &order::Command::Cancel { reason }).await?;
            return Err(Problem::from_error(&e));
        }
    };
    let order = handle(&s, &id, &order::Command::StartCheckout { saga }).await?;
    let location = format!("/orders/{id}");
    let headers = [(header::LOCATION, location)];
    Ok((StatusCode::ACCEPTED, headers, axum::Json(view(&id, &order))).into_response())
}

/// Asks the users service (request id and trace context passed on) whether `user_id` exists:
/// 422 naming `user_id` when it does not, 503 when users cannot answer.
async fn user_exists(s: &Orders, user_id: &str, headers: &HeaderMap) -> Result<(), Problem> {
    let path = format!("/users/{user_id}");
    match s.users.get(&path).propagate(headers).send().await {
        Ok(_) => Ok(()),
        Err(flotilla::client::Error::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
            Err(invalid("user_id", format!("no user {user_id:?}")))
        }
        Err(e) => Err(Problem::from_error(&e)),
    }
}

async fn read(
    State(s): State<Arc<Orders>>,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let loaded = s.repo.load(&id).await.map_err(store_problem)?;
    match loaded.state.status {
        Status::Absent => Err(Problem::not_found(format!("no order {id:?}"))),
        _ => Ok(axum::Json(view(&id, &loaded.state))),
    }
}

/// `GET /orders/{id}/saga`: the checkout's steps as the saga's stream records them.
async fn saga(State(s): State<Arc<Orders>>, Path(id): Path<String>) -> Result<Response, Problem> {
    let loaded = s.repo.load(&id).await.map_err(store_problem)?;
    let Some(saga) = loaded.state.saga else {
        return Err(Problem::not_found(format!("order {id:?} has no checkout")));
    };
    let state = s
        .sagas
        .get(&saga)
        .await
        .map_err(|e| Problem::from_error(&e))?;
    Ok(axum::Json(state).into_response())
}

/// `POST /orders/{id}/cancel`: the customer changes their mind. While the checkout runs, the
/// saga is cancelled and turns back (a charge in flight is refunded, or voided if it has not
/// landed yet; the stock is released; the order cancelled last): 202. A confirmed order is
/// not cancelled here: 409.
async fn cancel(State(s): State<Arc<Orders>>, Path(id): Path<String>) -> Result<Response, Problem> {
    let loaded = s.repo.load(&id).await.map_err(store_problem)?;
    let order = loaded.state;
    match (order.status, &order.saga) {
        (Status::Absent, _) => Err(Problem::not_found(format!("no order {id:?}"))),
        (Status::Confirmed, _) => Err(Problem::new(StatusCode::CONFLICT)
            .detail("the order is confirmed: ask for a return instead")),
        (Status::Cancelled, _) => Ok(axum::Json(view(&id, &order)).into_response()),
        (Status::Pending, Some(saga)) => match s.sagas.cancel(saga).await {
            Ok(_) => Ok((StatusCode::ACCEPTED, axum::Json(view(&id, &order))).into_response()),
            // It ended meanwhile: the order says how.
            Err(flotilla_saga::Error::InvalidState { .. }) => {
                let now = s.repo.load(&id).await.map_err(store_problem)?.state;
                let status = match now.status {
                    Status::Confirmed => StatusCode::CONFLICT,
                    _ => StatusCode::OK,
                };
                Ok((status, axum::Json(view(&id, &now))).into_response())
            }
            Err(e) => Err(Problem::from_error(&e)),
        },
        (Status::Pending, None) => {
            let reason = "cancelled by the customer".to_owned();
            let order = handle(&s, &id, &order::Command::Cancel { reason }).await?;
            Ok(axum::Json(view(&id, &order)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<Status>,
}

async fn list_orders(
    State(s): State<Arc<Orders>>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Vec<serde_json::Value>> {
    let orders = s.list.list(q.status);
    axum::Json(orders.iter().map(|(id, o)| view(id, o)).collect())
}

async fn handle(s: &Orders, id: &str, command: &order::Command) -> Result<Order, Problem> {
    let handled = s.repo.handle(id, command, Metadata::default()).await;
    let refused = |e: order::Refused| Problem::new(StatusCode::CONFLICT).detail(e.to_string());
    Ok(handled.map_err(store_problem)?.map_err(refused)?.state)
}

/// What the payments service announces.
#[derive(Debug, Deserialize)]
struct PaymentFact {
    order_id: Option<String>,
}

/// Records `payment.processed` / `payment.failed` on the order. Idempotent (the aggregate
/// ignores an outcome it already has), so redeliveries are harmless.
async fn record_payment(
    repo: Repository<Order>,
    event: Typed<PaymentFact>,
) -> Result<(), HandlerError> {
    let outcome = match event.received.event.ty.as_str() {
        "payment.processed" => "processed",
        "payment.failed" => "failed",
        _ => return Ok(()), // refunds are recorded by the saga's cancellation
    };
    let Some(order_id) = event.data.order_id else {
        return Err(HandlerError::reject("a payment event without order_id"));
    };
    let command = order::Command::RecordPayment {
        outcome: outcome.into(),
    };
    match repo.handle(&order_id, &command, Metadata::default()).await {
        Ok(_) => Ok(()), // an unknown order is another shop's: nothing to record
        Err(e) => Err(HandlerError::retry(e)),
    }
}
