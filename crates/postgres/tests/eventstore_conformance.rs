//! The PostgreSQL event store passes the whole conformance suite, each case in its own
//! schema (unique per run, dropped afterwards).
#![cfg(feature = "eventstore")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::conformance::Fixture;
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_testkit::{Backend, backend, unique_name};

struct Pg {
    store: Arc<PgEventStore>,
    options: Options,
}

impl Fixture for Pg {
    fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let client = self
                .store
                .pool()
                .get()
                .await
                .expect("a connection to drop the schema");
            let drop = format!("DROP SCHEMA {} CASCADE", self.options.schema);
            client
                .batch_execute(&drop)
                .await
                .expect("the test schema is dropped");
        })
    }
}

async fn setup() -> Option<Pg> {
    let url = backend(Backend::Postgres, "postgres event store conformance")?;
    let options = Options {
        schema: unique_name("es"),
        pool_size: 12,
        poll_interval_ms: 50,
        ..Options::new(url)
    };
    let store = PgEventStore::open(&options)
        .await
        .expect("the event store opens");
    Some(Pg {
        store: Arc::new(store),
        options,
    })
}

flotilla_eventstore::eventstore_conformance!(setup);
