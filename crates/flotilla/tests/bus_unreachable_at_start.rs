//! A bus that does not answer when the service starts (a control plane still coming up) does
//! not stop the service: it starts, `/ready` says which subscriptions wait, and the handlers
//! run once the bus answers. The bus is the platform's, over HTTP, against a port where the
//! control plane's bus API starts listening only later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla::events::{Bus, MemoryBackend, Typed};
use flotilla::testing::TestService;
use flotilla::{CheckStatus, Microservice};
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::{ConnectOptions, ControlPlane};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A loopback port nothing listens on yet.
async fn free_port() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Serves the bus API over an in-memory bus on `addr`.
async fn start_bus_api(addr: std::net::SocketAddr) {
    let broker =
        flotilla_broker::Broker::new(Default::default(), Arc::new(MemoryBackend::new())).unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, broker.router()).await });
}

#[tokio::test]
async fn the_service_starts_not_ready_and_subscribes_once_the_bus_answers() {
    let addr = free_port().await;
    let control_plane = ControlPlane::new(ConnectOptions::new(format!("http://{addr}"))).unwrap();
    let bus = Bus::new(Arc::new(PlatformBus::new(control_plane)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus.clone())
        .on_event("orders.*", "billing", move |e: Typed<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                tx.send(e.data).unwrap();
                Ok(())
            }
        });
    let service = TestService::start(builder).await;

    let ready = service.get("/ready").await;
    assert_eq!(ready.status, 503, "not ready while the bus is unreachable");
    let report = ready.json();
    assert_eq!(report["checks"]["events"]["status"], "critical", "{report}");

    start_bus_api(addr).await;
    while service.get("/ready").await.status != 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.publish_json("/shop", "orders.placed", &serde_json::json!({ "order": 1 }))
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap()["order"], 1);
    assert_eq!(
        service.get("/ready").await.json()["checks"]["events"]["status"],
        serde_json::to_value(CheckStatus::Passing).unwrap()
    );
    service.stop().await.unwrap();
}
