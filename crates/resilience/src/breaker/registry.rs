//! One breaker per upstream, shared by every caller in the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{BreakerConfig, CircuitBreaker};
use crate::metrics::Metrics;

/// Breakers keyed by upstream name. Cheap to clone; clones share the breakers.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    breakers: Arc<Mutex<HashMap<String, Arc<CircuitBreaker>>>>,
    metrics: Option<Metrics>,
}

impl Registry {
    /// An empty registry whose breakers report to `metrics`.
    pub fn new(metrics: Option<Metrics>) -> Self {
        Self {
            breakers: Arc::default(),
            metrics,
        }
    }

    /// The breaker of `upstream`, created with `config` on first use. A later call with a
    /// different config replaces the breaker (a policy reload), starting it closed.
    pub fn get_or_create(&self, upstream: &str, config: &BreakerConfig) -> Arc<CircuitBreaker> {
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(upstream).filter(|b| b.config() == config) {
            return b.clone();
        }
        let b = Arc::new(CircuitBreaker::new(
            upstream,
            config.clone(),
            self.metrics.clone(),
        ));
        map.insert(upstream.to_owned(), b.clone());
        b
    }

    /// The breaker of `upstream`, if one was created.
    pub fn get(&self, upstream: &str) -> Option<Arc<CircuitBreaker>> {
        let map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        map.get(upstream).cloned()
    }
}
