//! Event schema evolution: upcasters rewrite old stored events into today's shape as they are
//! read, so the store stays append-only and the code only knows the current schema.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::RecordedEvent;

type Rewrite = Arc<dyn Fn(Value) -> Value + Send + Sync>;

#[derive(Clone)]
struct Step {
    from_type: String,
    to_type: String,
    rewrite: Rewrite,
}

/// An ordered chain of upcasters; each applies to events of one stored type. Steps run in the
/// order they were added, so `A -> B` followed by `B -> C` upgrades an `A` to a `C`.
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: Vec<Step>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<_> = self
            .steps
            .iter()
            .map(|s| format!("{} -> {}", s.from_type, s.to_type))
            .collect();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcasting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites the data of events of type `event_type`.
    pub fn map(
        self,
        event_type: &str,
        rewrite: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.step(event_type, event_type, rewrite)
    }

    /// Renames type `from` to `to` and rewrites its data.
    pub fn step(
        mut self,
        from: &str,
        to: &str,
        rewrite: impl Fn(Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.steps.push(Step {
            from_type: from.to_owned(),
            to_type: to.to_owned(),
            rewrite: Arc::new(rewrite),
        });
        self
    }

    /// Upgrades one event through every step that applies.
    pub fn apply(&self, mut event: RecordedEvent) -> RecordedEvent {
        for step in &self.steps {
            if event.event_type == step.from_type {
                event.data = (step.rewrite)(std::mem::take(&mut event.data));
                event.event_type.clone_from(&step.to_type);
            }
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::StreamId;
    use serde_json::json;

    fn stored(ty: &str, data: Value) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: StreamId::new("order-1").unwrap(),
            version: 1,
            position: 1,
            event_type: ty.into(),
            data,
            metadata: Default::default(),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn chained_steps_upgrade_the_oldest_shape_to_the_newest() {
        let up = Upcasters::new()
            .step("OrderCreated", "OrderPlaced", |d| d)
            .map("OrderPlaced", |mut d| {
                if d.get("currency").is_none() {
                    d["currency"] = json!("EUR");
                }
                d
            });
        let e = up.apply(stored("OrderCreated", json!({"customer": "ann"})));
        assert_eq!(e.event_type, "OrderPlaced");
        assert_eq!(e.data, json!({"customer": "ann", "currency": "EUR"}));
        let untouched = up.apply(stored("ItemAdded", json!(1)));
        assert_eq!(
            (untouched.event_type.as_str(), untouched.data),
            ("ItemAdded", json!(1))
        );
    }
}
