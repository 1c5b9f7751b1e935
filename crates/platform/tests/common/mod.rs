//! A real control plane for the platform backend's tests: the bus and event-store HTTP APIs
//! (the same routers `flotilla up` mounts) over embedded SQLite, served on a loopback port.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};
use tokio_util::sync::CancellationToken;

/// A running control plane; stops when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts one on a fresh database in a new temporary directory.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory").keep();
        Self::start_at(&dir, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts one on the database in `dir`, listening on `addr` (a restart reuses both).
    pub async fn start_at(dir: &Path, addr: SocketAddr) -> Self {
        let db = Database::open(Options::new(dir.join("flotilla.db"))).expect("open database");
        let bus = SqliteBus::open(db.clone(), BusOptions::default()).expect("open bus");
        let store = SqliteEventStore::open(db, None)
            .await
            .expect("open event store");
        let broker = flotilla_broker::Broker::new(Default::default(), Arc::new(bus))
            .expect("broker options");
        let stop = CancellationToken::new();
        let api = flotilla_store::StoreApi::new(Default::default(), Arc::new(store))
            .expect("store options")
            .end_streams_on(stop.clone());
        let router = broker.router().merge(api.router());
        let listener = bind(addr).await;
        let addr = listener.local_addr().expect("local address");
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let run = broker.run(shutdown.clone());
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            let _ = tokio::join!(run, serve);
        });
        Self {
            addr,
            dir: dir.to_owned(),
            stop,
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, as a crash would: in-flight requests are cut off.
    pub async fn kill(mut self) -> (PathBuf, SocketAddr) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        (self.dir.clone(), self.addr)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr`, retrying briefly while a just-closed listener still holds the port.
async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..50 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}
