//! The conformance suite: every behaviour of the [`EventStore`] contract, as cases each
//! backend runs against itself from its `tests/` with one macro call:
//!
//! ```ignore
//! flotilla_eventstore::eventstore_conformance!(setup);
//! // where `async fn setup() -> Option<impl Fixture>` gives a fresh, empty store
//! // (or None to skip, e.g. when flotilla_testkit::backend finds no server).
//! ```
//!
//! Each case gets a fresh store and fails by panicking with a message that names the rule.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed conformance case

mod appends;
mod concurrency;
mod lifecycle;
mod reads;
mod replay;
mod subscriptions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_core::StreamId;
use serde_json::json;

use crate::{EventStore, NewEvent};

pub use appends::{expected_version_rules, idempotent_reappend, invalid_batches_are_refused};
pub use concurrency::concurrent_writers_get_contiguous_versions;
pub use lifecycle::{delete_then_truncate, snapshots_replace_and_validate, truncate_keeps_version};
pub use reads::{
    list_streams_in_id_order, read_all_by_position_category_and_type, read_stream_both_directions,
};
pub use replay::snapshot_plus_tail_equals_full_replay;
pub use subscriptions::{catch_up_then_live_has_no_gap_or_duplicate, checkpoint_resume};

/// A fresh store for one case, and how to clean up after it.
pub trait Fixture: Send + 'static {
    /// The store under test.
    fn store(&self) -> Arc<dyn EventStore>;
    /// Releases what the fixture created (a schema, a directory). Runs even if the case failed.
    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Runs `case` on a fixture from `setup`; skips when `setup` gives none.
pub async fn run<F, C, Fut>(setup: impl Future<Output = Option<F>>, case: C)
where
    F: Fixture,
    C: FnOnce(Arc<dyn EventStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = setup.await else { return };
    let outcome = tokio::spawn(case(fixture.store())).await;
    fixture.teardown().await;
    if let Err(e) = outcome
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Generates one `#[tokio::test]` per conformance case, each on a fresh fixture from `$setup`
/// (a path to an `async fn() -> Option<impl Fixture>`).
#[macro_export]
macro_rules! eventstore_conformance {
    ($setup:path) => {
        $crate::eventstore_conformance!(@cases $setup;
            expected_version_rules,
            idempotent_reappend,
            invalid_batches_are_refused,
            read_stream_both_directions,
            read_all_by_position_category_and_type,
            list_streams_in_id_order,
            concurrent_writers_get_contiguous_versions,
            catch_up_then_live_has_no_gap_or_duplicate,
            checkpoint_resume,
            snapshots_replace_and_validate,
            delete_then_truncate,
            truncate_keeps_version,
            snapshot_plus_tail_equals_full_replay
        );
    };
    (@cases $setup:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::run($setup(), $crate::conformance::$case).await;
            }
        )*
    };
}

/// A stream id for tests, panicking on an invalid literal (a bug in the suite).
pub(crate) fn sid(s: &str) -> StreamId {
    StreamId::new(s).expect("conformance stream ids are valid literals")
}

/// `n` events of type `ty` with data `{"n": i}`.
pub(crate) fn events(ty: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new(ty, json!({ "n": i })))
        .collect()
}
