//! The bus conformance suite through the platform backend, against a real control plane
//! (the broker's HTTP API over embedded SQLite) started on a loopback port: every case must
//! hold over HTTP exactly as it does in process.

mod common;

use std::sync::Arc;

use flotilla_bus::conformance::Harness;
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::{ConnectOptions, ControlPlane};

async fn harness() -> Option<Harness> {
    // Leaked on purpose: the control plane must outlive the case, and the process ends soon.
    let server = Box::leak(Box::new(common::ControlPlane::start().await));
    let cp = ControlPlane::new(ConnectOptions::new(server.url())).expect("client options");
    let bus = PlatformBus::connect(cp)
        .await
        .expect("the control plane answers");
    assert_eq!(bus.server_backend().as_deref(), Some("sqlite"));
    let ns = flotilla_testkit::unique_name("p");
    Some(Harness::new(Arc::new(bus), &ns))
}

flotilla_bus::conformance_suite!(harness);
