//! The embedded SQLite bus runs the whole conformance suite, each case on a fresh database.

use std::sync::Arc;

use flotilla_bus::conformance::Harness;
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Options};

async fn harness() -> Option<Harness> {
    // The directory lives as long as the test process; each case gets its own file.
    let dir = tempfile::tempdir().expect("temporary directory").keep();
    let db = Database::open(Options::new(dir.join("bus.db"))).expect("open database");
    let bus = SqliteBus::open(db, BusOptions::default()).expect("open bus");
    Some(Harness::new(Arc::new(bus), "sqlite"))
}

flotilla_bus::conformance_suite!(harness);
