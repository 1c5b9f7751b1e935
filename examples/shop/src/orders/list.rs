//! The order list: a hosted projection of the `order-*` streams for `GET /orders`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{Aggregate, Filter, RecordedEvent};

use super::order::{Event, Order};

/// The shared read side: order id to (state, version).
#[derive(Debug, Clone, Default)]
pub struct OrderList(Arc<RwLock<BTreeMap<String, (Order, u64)>>>);

impl OrderList {
    /// Every order (id and state), optionally only those with `status`.
    pub fn list(&self, status: Option<super::order::Status>) -> Vec<(String, Order)> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, (o, _))| status.is_none_or(|s| o.status == s))
            .map(|(id, (o, _))| (id.clone(), o.clone()))
            .collect()
    }
}

/// The projection feeding an [`OrderList`].
#[derive(Debug)]
pub(super) struct OrderListProjection(pub(super) OrderList);

#[async_trait]
impl Projection for OrderListProjection {
    fn name(&self) -> &str {
        "shop-orders-list"
    }

    fn filter(&self) -> Filter {
        Filter::Category("order".into())
    }

    async fn apply(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        let event: Event = serde_json::from_value(e.data.clone())?;
        let id = e.stream.as_str().trim_start_matches("order-").to_owned();
        let mut map = self.0.0.write().unwrap_or_else(|p| p.into_inner());
        let (order, version) = map.entry(id).or_default();
        // At-least-once delivery: an event at or below the version already folded is a repeat.
        if e.version > *version {
            *order = std::mem::take(order).evolve(&event);
            *version = e.version;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.0.0.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}
