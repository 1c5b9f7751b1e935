//! Every payment, for `GET /payments`: a hosted projection of the `payment-*` streams.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{Aggregate, Filter, RecordedEvent};

use super::payment::{Event, Payment};

/// The shared read side: payment key to (state, version).
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<RwLock<BTreeMap<String, (Payment, u64)>>>);

impl Ledger {
    /// Every payment with its key, optionally only those of one order.
    pub fn list(&self, order_id: Option<&str>) -> Vec<serde_json::Value> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|(_, (p, _))| order_id.is_none() || p.order_id() == order_id)
            .map(|(key, (p, _))| super::view(key, p))
            .collect()
    }
}

/// The projection feeding a [`Ledger`].
#[derive(Debug)]
pub(super) struct LedgerProjection(pub(super) Ledger);

#[async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &str {
        "shop-payments-ledger"
    }

    fn filter(&self) -> Filter {
        Filter::Category("payment".into())
    }

    async fn apply(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        let event: Event = serde_json::from_value(e.data.clone())?;
        let key = e.stream.as_str().trim_start_matches("payment-").to_owned();
        let mut map = self.0.0.write().unwrap_or_else(|p| p.into_inner());
        let (payment, version) = map.entry(key).or_default();
        // At-least-once delivery: an event at or below the version already folded is a repeat.
        if e.version > *version {
            *payment = std::mem::take(payment).evolve(&event);
            *version = e.version;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.0.0.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}
