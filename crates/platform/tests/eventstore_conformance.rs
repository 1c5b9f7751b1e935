//! The platform event store passes the whole event-store conformance suite against a real
//! control plane (the store API over embedded SQLite) that each case starts on a loopback port.
#![cfg(feature = "eventstore")]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::conformance::Fixture;
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_platform::{ConnectOptions, ControlPlane};

struct Remote {
    plane: common::ControlPlane,
    store: Arc<PlatformEventStore>,
}

impl Fixture for Remote {
    fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            drop(self.store);
            let (dir, _) = self.plane.kill().await;
            let _ = std::fs::remove_dir_all(dir);
        })
    }
}

async fn setup() -> Option<Remote> {
    let plane = common::ControlPlane::start().await;
    let client = ControlPlane::new(ConnectOptions::new(plane.url())).expect("a valid URL");
    let store = PlatformEventStore::connect(client)
        .await
        .expect("connects inside a runtime");
    Some(Remote {
        plane,
        store: Arc::new(store),
    })
}

flotilla_eventstore::eventstore_conformance!(setup);
