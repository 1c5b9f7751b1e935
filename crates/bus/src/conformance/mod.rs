//! The conformance suite every backend runs from its own `tests/` (feature `conformance`).
//!
//! ```ignore
//! // crates/<backend>/tests/bus_conformance.rs
//! async fn harness() -> Option<flotilla_bus::conformance::Harness> {
//!     let url = flotilla_testkit::backend(flotilla_testkit::Backend::Nats, "nats bus")?;
//!     let backend = MyBackend::connect(&url).await.expect("connect");
//!     Some(Harness::new(std::sync::Arc::new(backend), &flotilla_testkit::unique_name("bus")))
//! }
//! flotilla_bus::conformance_suite!(harness);
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case (multi-threaded runtime, real time:
//! brokers keep their own clocks), so each case passes or fails on its own. Every name a case
//! uses starts with the harness's namespace, so runs against shared servers never collide,
//! and every case deletes its groups when it passes.
//!
//! Timing: "not before" checks compare against the requested delay (minus [`EARLY_SLACK`]
//! for timer granularity); "eventually" checks allow [`PATIENCE`], far more than any healthy
//! backend needs, so they fail only when the behaviour is missing.
//!
//! Capabilities: a case whose feature the backend declares missing still runs, and checks
//! the documented exception (an [`Error::Unsupported`](crate::Error::Unsupported) answer
//! where the contract has one) and prints `EXCEPTION <backend>: <feature>` so the gap shows
//! in the test log.

mod backend_cases;
mod engine_cases;

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use serde_json::json;

use crate::{Backend, Delivery, GroupName, GroupSpec, Outgoing, PublishOutcome};

pub use backend_cases::*;
pub use engine_cases::*;

/// How much earlier than asked a delayed delivery may appear (timer granularity).
pub const EARLY_SLACK: Duration = Duration::from_millis(20);
/// How long an "eventually" check waits.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A backend under test plus the namespace that keeps this run's names unique.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Prefix of every topic and group name the cases use: ASCII letters, digits, `_`, `-`.
    pub namespace: String,
}

impl Harness {
    /// A harness; `namespace` should be unique per run (`flotilla_testkit::unique_name`).
    pub fn new(backend: Arc<dyn Backend>, namespace: &str) -> Self {
        Self {
            backend,
            namespace: namespace.to_owned(),
        }
    }

    /// `<namespace>.<case>.<name>`.
    pub fn topic(&self, case: &str, name: &str) -> TopicName {
        TopicName::new(format!("{}.{case}.{name}", self.namespace))
            .expect("namespace and case names are valid topic segments")
    }

    /// `<namespace>-<case>-<name>`.
    pub fn group(&self, case: &str, name: &str) -> GroupName {
        GroupName::new(format!("{}-{case}-{name}", self.namespace))
            .expect("namespace and case names are valid group names")
    }

    /// Declares `group` on `pattern`, panicking with the backend's answer if it fails.
    pub async fn declare(&self, group: &GroupName, pattern: &str) {
        let spec = GroupSpec {
            name: group.clone(),
            pattern: TopicPattern::new(pattern).expect("case patterns are valid"),
        };
        self.backend
            .declare_group(&spec)
            .await
            .unwrap_or_else(|e| panic!("declare_group {group} on {pattern}: {e}"));
    }

    /// Publishes events one batch, asserting every one is stored.
    pub async fn publish(&self, batch: Vec<Outgoing>) {
        let n = batch.len();
        let out = self.backend.publish(batch).await.expect("publish");
        assert_eq!(out, vec![PublishOutcome::Stored; n], "every event stored");
    }

    /// Receives with a 30 s lease, waiting up to `wait`.
    pub async fn receive(&self, group: &GroupName, max: usize, wait: Duration) -> Vec<Delivery> {
        self.backend
            .receive(group, max, Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|e| panic!("receive from {group}: {e}"))
    }

    /// Receives until `n` deliveries arrived or [`PATIENCE`] ran out.
    pub async fn receive_n(&self, group: &GroupName, n: usize) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut got = Vec::new();
        while got.len() < n && tokio::time::Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            got.extend(self.receive(group, n - got.len(), wait).await);
        }
        got
    }

    /// Deletes the case's groups.
    pub async fn cleanup(&self, groups: &[&GroupName]) {
        for g in groups {
            if let Err(e) = self.backend.delete_group(g).await {
                eprintln!("cleanup of group {g} failed: {e}");
            }
        }
    }

    /// Prints the declared exception so it shows in the test log.
    pub fn exception(&self, feature: &str) {
        eprintln!(
            "EXCEPTION {}: {feature} (declared in its capabilities)",
            self.backend.name()
        );
    }
}

/// A JSON event from the suite's source, numbered `n`.
pub fn event(n: u32) -> CloudEvent {
    CloudEvent::new("/flotilla/conformance", "conformance.test").with_json(json!({ "n": n }))
}

/// The `n` an [`event`] carries.
pub fn number(d: &Delivery) -> u64 {
    event_number(&d.event)
}

/// The `n` an [`event`] carries.
pub fn event_number(e: &CloudEvent) -> u64 {
    e.json_data()
        .and_then(|v| v["n"].as_u64())
        .expect("suite events carry a number")
}

/// Expands to one `#[tokio::test]` per conformance case, each getting its harness from
/// `$harness` (an `async fn() -> Option<Harness>`; `None` skips, as
/// `flotilla_testkit::backend` does when a server is absent).
#[macro_export]
macro_rules! conformance_suite {
    ($harness:path) => {
        $crate::conformance_suite!(@cases $harness;
            consume_after_publish,
            patterns_route_only_matching_topics,
            consumers_in_a_group_compete_and_groups_fan_out,
            nack_with_delay_redelivers_after_the_delay_not_before,
            expired_lease_redelivers_to_another_consumer,
            dead_letter_keeps_the_event_and_the_failure,
            replay_from_the_dlq_delivers_again,
            purge_removes_dead_letters,
            same_key_events_are_delivered_in_order_one_at_a_time,
            delayed_publish_is_not_delivered_before_its_time,
            duplicate_publish_within_the_window_is_dropped,
            redeclaring_a_group_with_another_pattern_conflicts,
            engine_max_deliveries_then_exactly_one_dead_letter,
            engine_handler_timeout_counts_as_a_failure,
            engine_consumer_dying_mid_handler_hands_the_event_to_another
        );
    };
    (@cases $harness:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = $harness().await else { return };
                $crate::conformance::$case(h).await;
            }
        )*
    };
}
