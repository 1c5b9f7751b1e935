//! The bus conformance suite through the platform backend against a control plane whose bus
//! is NATS JetStream: the platform backend passes on what the server's engine gives, no more
//! and no less (its capabilities are the engine's). Skipped, visibly, when NATS is absent.

use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::conformance::Harness;
use flotilla_nats::{NatsBackend, Options};
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::{ConnectOptions, ControlPlane};
use flotilla_testkit::{Backend, backend, unique_name};
use tokio_util::sync::CancellationToken;

/// Serves the broker's routes over `bus` on a loopback port until the process ends.
async fn serve(bus: Arc<dyn flotilla_bus::Backend>) -> String {
    let broker = flotilla_broker::Broker::new(Default::default(), bus).expect("broker options");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let router = broker.router();
    tokio::spawn(async move {
        let _ = tokio::join!(
            broker.run(CancellationToken::new()),
            axum::serve(listener, router)
        );
    });
    url
}

async fn harness() -> Option<Harness> {
    let url = backend(Backend::Nats, "platform bus conformance over NATS")?;
    let opts = Options {
        url,
        prefix: "flotilla_conformance".into(),
        max_age: Duration::from_secs(3600),
        // As in flotilla-nats's own suite: short leases are 1 s, longer ones are extended.
        ack_wait: Duration::from_secs(1),
        ..Options::default()
    };
    let nats = NatsBackend::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect to NATS: {e}"));
    let cp = ControlPlane::new(ConnectOptions::new(serve(Arc::new(nats)).await))
        .expect("client options");
    let bus = PlatformBus::connect(cp)
        .await
        .expect("the control plane answers");
    assert_eq!(bus.server_backend().as_deref(), Some("nats"));
    Some(Harness::new(Arc::new(bus), &unique_name("pn")))
}

flotilla_bus::conformance_suite!(harness);
