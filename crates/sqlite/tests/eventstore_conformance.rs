//! The SQLite event store passes the whole conformance suite, each case on a fresh database
//! file with full durability.
#![cfg(feature = "eventstore")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::conformance::Fixture;
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};

struct Sqlite {
    store: Arc<SqliteEventStore>,
    _dir: tempfile::TempDir,
}

impl Fixture for Sqlite {
    fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { drop(self) })
    }
}

async fn setup() -> Option<Sqlite> {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let db = Database::open(Options::new(dir.path().join("es.db"))).expect("database opens");
    let store = SqliteEventStore::open(db, None)
        .await
        .expect("schema is created");
    Some(Sqlite {
        store: Arc::new(store),
        _dir: dir,
    })
}

flotilla_eventstore::eventstore_conformance!(setup);
