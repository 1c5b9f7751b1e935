//! Subscription filters on event attributes, applied by the delivery engine.

use flotilla_core::CloudEvent;
use flotilla_core::event::ExtensionValue;
use serde::{Deserialize, Serialize};

/// Which events of the subscribed topics a handler sees. Every non-empty list must match
/// (AND across lists, OR within one). Events that do not match are acked without running the
/// handler: the group has decided it does not want them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Accepted `type` values; a value ending in `*` matches by prefix.
    pub types: Vec<String>,
    /// Accepted `source` values; a value ending in `*` matches by prefix.
    pub sources: Vec<String>,
    /// Extension attributes that must be present with exactly this value (as text).
    pub extensions: Vec<(String, String)>,
}

impl Filter {
    /// Accepts everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Adds an accepted type (or `prefix*`).
    pub fn with_type(mut self, ty: impl Into<String>) -> Self {
        self.types.push(ty.into());
        self
    }

    /// Adds an accepted source (or `prefix*`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.sources.push(source.into());
        self
    }

    /// Requires extension `name` to equal `value`.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.push((name.into(), value.into()));
        self
    }

    /// Whether the handler should see `event`.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        any_matches(&self.types, &event.ty)
            && any_matches(&self.sources, &event.source)
            && self
                .extensions
                .iter()
                .all(|(k, v)| event.extensions.get(k).is_some_and(|x| text(x) == *v))
    }
}

fn any_matches(accepted: &[String], value: &str) -> bool {
    accepted.is_empty()
        || accepted.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => a == value,
        })
}

fn text(v: &ExtensionValue) -> String {
    match v {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Integer(i) => i.to_string(),
        ExtensionValue::Boolean(b) => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_types_by_prefix_sources_exactly_and_extensions_as_text() {
        let mut e = CloudEvent::new("/orders", "orders.created.v1");
        e.set_extension("tenant", ExtensionValue::String("acme".into()))
            .unwrap();
        e.set_extension("prio", ExtensionValue::Integer(3)).unwrap();
        assert!(Filter::all().matches(&e));
        assert!(Filter::all().with_type("orders.created*").matches(&e));
        assert!(!Filter::all().with_type("orders.created").matches(&e));
        assert!(
            Filter::all()
                .with_source("/payments")
                .with_source("/orders")
                .matches(&e)
        );
        assert!(Filter::all().with_extension("prio", "3").matches(&e));
        assert!(!Filter::all().with_extension("tenant", "other").matches(&e));
        assert!(!Filter::all().with_extension("missing", "x").matches(&e));
    }
}
