//! The platform event store passes the whole conformance suite again against a control plane
//! whose event store is PostgreSQL (each case in its own schema, dropped afterwards), so the
//! remote store adds no semantics of its own over either engine. Skipped, visibly, when no
//! PostgreSQL server answers (`flotilla_testkit::backend`).
#![cfg(feature = "eventstore")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flotilla_eventstore::EventStore;
use flotilla_eventstore::conformance::Fixture;
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_platform::{ConnectOptions, ControlPlane};
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use flotilla_store::StoreApi;
use flotilla_testkit::{Backend, backend, unique_name};
use tokio_util::sync::CancellationToken;

struct Remote {
    store: Arc<PlatformEventStore>,
    pg: Arc<PgEventStore>,
    schema: String,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture for Remote {
    fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    fn teardown(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            drop(self.store);
            self.stop.cancel();
            // A graceful stop, bounded: an idle pooled connection must not hold the teardown.
            let mut server = self.server;
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
            server.abort();
            let client = self.pg.pool().get().await.expect("a connection");
            let drop = format!("DROP SCHEMA {} CASCADE", self.schema);
            client
                .batch_execute(&drop)
                .await
                .expect("the schema is dropped");
        })
    }
}

/// A control plane serving only the store API, over PostgreSQL, on a loopback port.
async fn setup() -> Option<Remote> {
    let url = backend(Backend::Postgres, "platform event store over PostgreSQL")?;
    let options = Options {
        schema: unique_name("plat_es"),
        pool_size: 12,
        poll_interval_ms: 50,
        ..Options::new(url)
    };
    let pg = Arc::new(PgEventStore::open(&options).await.expect("the store opens"));
    let stop = CancellationToken::new();
    let api = StoreApi::new(Default::default(), pg.clone())
        .expect("default options")
        .end_streams_on(stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let shutdown = stop.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, api.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        let _ = serve.await;
    });
    let client = ControlPlane::new(ConnectOptions::new(format!("http://{addr}"))).expect("URL");
    let store = PlatformEventStore::connect(client).await.expect("connects");
    Some(Remote {
        store: Arc::new(store),
        pg,
        schema: options.schema,
        stop,
        server,
    })
}

flotilla_eventstore::eventstore_conformance!(setup);
