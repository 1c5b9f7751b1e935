//! The `place-order` saga (sagas/place-order.toml), run by an orchestrator inside the orders
//! service on the platform's event store: its HTTP steps find inventory and payments through
//! the platform's registry, its order steps are functions of this service.

use flotilla::core::ServiceName;
use flotilla::eventsourcing::{Metadata, Repository};
use flotilla::platform::Platform;
use flotilla_saga::{Orchestrator, SagaDefinition, StepCall, StepError};
use serde_json::json;

use super::order::{Command, Order, Refused};

/// The definition, compiled in from the declarative file.
pub const PLACE_ORDER: &str = include_str!("../../sagas/place-order.toml");

/// Builds the orchestrator and resumes every checkout a previous run left unfinished.
pub(super) async fn orchestrator(
    platform: &Platform,
    orders: Repository<Order>,
) -> Result<Orchestrator, flotilla::Error> {
    let definition = SagaDefinition::from_toml(PLACE_ORDER).map_err(setup)?;
    let discovery = platform.discovery();
    // Start following the participants now, so the first checkout finds them in the cache.
    for name in ["inventory", "payments"] {
        let name = ServiceName::new(name).map_err(setup)?;
        drop(discovery.watch(&name));
    }
    let (check, cancel, confirm) = (orders.clone(), orders.clone(), orders);
    let orchestrator = Orchestrator::builder(platform.event_store())
        .discovery(discovery)
        .function("order-check", move |call: StepCall| {
            step(check.clone(), call, |_| None)
        })
        .function("order-cancel", move |call: StepCall| {
            step(cancel.clone(), call, |_| {
                Some(Command::Cancel {
                    reason: "checkout turned back".into(),
                })
            })
        })
        .function("order-confirm", move |call: StepCall| {
            step(confirm.clone(), call, |_| Some(Command::Confirm))
        })
        .saga(definition)
        .build()
        .map_err(setup)?;
    let recovered = orchestrator.recover().await.map_err(setup)?;
    tracing::info!(?recovered, "place-order checkouts resumed");
    Ok(orchestrator)
}

/// Runs `command` (or only checks the order when none) on the saga's order. The aggregate makes
/// a repeat a no-op, which is what makes these steps safe to run at least once.
async fn step(
    orders: Repository<Order>,
    call: StepCall,
    command: impl Fn(&StepCall) -> Option<Command>,
) -> Result<serde_json::Value, StepError> {
    let order_id = call.data["order_id"]
        .as_str()
        .ok_or_else(|| StepError::permanent("the saga's data has no order_id"))?;
    let Some(command) = command(&call) else {
        let loaded = orders.load(order_id).await.map_err(retryable)?;
        return match loaded.state.status {
            super::order::Status::Pending => Ok(json!({ "order_id": order_id })),
            other => Err(StepError::permanent(format!("the order is {other:?}"))),
        };
    };
    let handled = orders.handle(order_id, &command, Metadata::default()).await;
    match handled.map_err(retryable)? {
        Ok(h) => Ok(json!({ "order_id": order_id, "status": h.state.status })),
        Err(refused @ (Refused::Ended(_) | Refused::NotFound | Refused::Exists)) => {
            Err(StepError::permanent(refused.to_string()))
        }
    }
}

fn retryable(e: flotilla::eventsourcing::Error) -> StepError {
    StepError::retryable(format!("the order store: {e}"))
}

fn setup(e: impl std::fmt::Display) -> flotilla::Error {
    flotilla::Error::Setup(format!("place-order saga: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declarative_definition_loads_and_validates() {
        let def = SagaDefinition::from_toml(PLACE_ORDER).expect("the file is a valid saga");
        let steps: Vec<_> = def.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["order", "reserve", "charge", "confirm"]);
    }
}
