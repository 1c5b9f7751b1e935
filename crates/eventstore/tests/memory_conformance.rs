//! The in-memory store passes the whole conformance suite.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_eventstore::conformance::Fixture;
use flotilla_eventstore::{EventStore, MemoryEventStore};

struct Memory(Arc<MemoryEventStore>);

impl Fixture for Memory {
    fn store(&self) -> Arc<dyn EventStore> {
        self.0.clone()
    }

    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

async fn setup() -> Option<Memory> {
    Some(Memory(Arc::new(MemoryEventStore::new())))
}

flotilla_eventstore::eventstore_conformance!(setup);
