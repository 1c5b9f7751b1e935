//! Consumer lag per group as Prometheus gauges, refreshed from `Backend::groups()`.
//!
//! `flotilla_bus_consumer_lag{group}`: events routed to the group and not yet acked or
//! dead-lettered (in flight and delayed ones included); `flotilla_bus_dead_letters{group}`:
//! entries in its dead-letter queue. A deleted group's series disappear at the next refresh.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{Backend, GroupInfo};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(&'static str, String)>;

/// The gauges; cheap to clone (they share their values).
#[derive(Debug, Clone, Default)]
pub(crate) struct LagMetrics {
    lag: Family<Labels, Gauge>,
    dead_letters: Family<Labels, Gauge>,
    /// Refreshing costs a backend call per interval: only done once someone can read them.
    registered: Arc<AtomicBool>,
    /// Groups with series, to remove those of deleted groups.
    shown: Arc<Mutex<BTreeSet<String>>>,
}

impl LagMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("flotilla_bus");
        r.register(
            "consumer_lag",
            "Events routed to a group and not yet acked or dead-lettered, by group",
            self.lag.clone(),
        );
        r.register(
            "dead_letters",
            "Entries in a group's dead-letter queue, by group",
            self.dead_letters.clone(),
        );
        self.registered.store(true, Ordering::Release);
    }

    fn show(&self, groups: &[GroupInfo]) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<String> = groups.iter().map(|g| g.spec.name.to_string()).collect();
        for gone in shown.difference(&now) {
            self.lag.remove(&label(gone));
            self.dead_letters.remove(&label(gone));
        }
        for g in groups {
            let l = label(g.spec.name.as_str());
            self.lag.get_or_create(&l).set(saturating(g.pending));
            self.dead_letters
                .get_or_create(&l)
                .set(saturating(g.dead_letters));
        }
        *shown = now;
    }

    /// Refreshes every `interval` until `shutdown`; a failed refresh keeps the last values
    /// and is logged.
    pub(crate) async fn run(
        &self,
        backend: Arc<dyn Backend>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        if !self.registered.load(Ordering::Acquire) {
            return;
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match backend.groups().await {
                Ok(groups) => self.show(&groups),
                Err(e) => tracing::warn!(error = %e, "cannot refresh consumer lag"),
            }
        }
    }
}

fn label(group: &str) -> Labels {
    vec![("group", group.to_owned())]
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
