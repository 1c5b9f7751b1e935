//! The bus conformance suite against the NATS JetStream server on this machine.

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::conformance::Harness;
use flotilla_nats::{NatsBackend, Options};
use flotilla_testkit::{Backend, backend, unique_name};

/// A backend on the shared test stream: every case's topics and groups carry the harness's
/// unique namespace, the suite deletes its groups, and events expire after `max_age`, so runs
/// against the shared server leave nothing behind for long.
async fn harness() -> Option<Harness> {
    let url = backend(Backend::Nats, "nats bus conformance")?;
    let opts = Options {
        url,
        prefix: "flotilla_conformance".into(),
        max_age: Duration::from_secs(3600),
        // The suite's short leases are 1 s; longer ones are extended by the keeper.
        ack_wait: Duration::from_secs(1),
        ..Options::default()
    };
    let b = NatsBackend::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to NATS: {e}"));
    Some(Harness::new(Arc::new(b), &unique_name("c")))
}

flotilla_bus::conformance_suite!(harness);
