//! Scripted upstreams: small axum servers on 127.0.0.1:0 whose behaviour each test sets.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;

use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::StaticDiscovery;

/// Serves `router` on an ephemeral loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An instance of `service` at `addr`.
pub fn instance(service: &str, addr: SocketAddr) -> ServiceInstance {
    ServiceInstance::new(
        ServiceName::new(service).unwrap(),
        addr.ip().to_string(),
        addr.port(),
    )
}

/// A discovery source where `service` has the instances at `addrs`.
pub fn discovery(entries: &[(&str, Vec<SocketAddr>)]) -> Arc<StaticDiscovery> {
    let d = StaticDiscovery::new();
    for (service, addrs) in entries {
        let list = addrs.iter().map(|a| instance(service, *a)).collect();
        d.set_passing(&ServiceName::new(*service).unwrap(), list);
    }
    Arc::new(d)
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}
