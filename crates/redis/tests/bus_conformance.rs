//! The bus conformance suite against the Redis server on this machine.

use std::sync::Arc;

use flotilla_bus::conformance::Harness;
use flotilla_redis::{Options, RedisBackend};
use flotilla_testkit::{Backend, backend, unique_name};

/// A backend under the shared test prefix: every case's topics and groups carry the
/// harness's unique namespace, and the suite deletes its groups (their streams, leases and
/// dead letters). What stays is a count per topic and dedupe keys that expire.
async fn harness() -> Option<Harness> {
    let url = backend(Backend::Redis, "redis bus conformance")?;
    let opts = Options {
        url,
        prefix: "flotilla_conformance".into(),
        ..Options::default()
    };
    let b = RedisBackend::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis: {e}"));
    Some(Harness::new(Arc::new(b), &unique_name("c")))
}

flotilla_bus::conformance_suite!(harness);
