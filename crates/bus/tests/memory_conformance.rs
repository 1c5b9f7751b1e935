//! The in-memory backend runs the whole conformance suite.

use std::sync::Arc;

use flotilla_bus::MemoryBackend;
use flotilla_bus::conformance::Harness;

async fn harness() -> Option<Harness> {
    Some(Harness::new(Arc::new(MemoryBackend::new()), "mem"))
}

flotilla_bus::conformance_suite!(harness);
