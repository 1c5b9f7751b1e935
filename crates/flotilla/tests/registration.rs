//! Self-registration against a real registry: the service registers once it listens, passes
//! its health check, and is drained then removed before its listener closes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use flotilla::testing::TestService;
use flotilla::{Microservice, SelfRegistration};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_discovery::{HealthStatus, Query};
use flotilla_registry::{Options, Registry};
use tokio_util::sync::CancellationToken;

async fn registry() -> (Registry, String, CancellationToken) {
    let registry = Registry::new(Options::default(), Arc::new(MemoryCatalogStore::new()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let (r, s) = (registry.clone(), stop.clone());
    tokio::spawn(async move { r.run(s).await });
    let router = registry.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (registry, url, stop)
}

fn any_status() -> Query {
    let mut q = Query::default();
    q.status = vec![
        HealthStatus::Passing,
        HealthStatus::Warning,
        HealthStatus::Critical,
        HealthStatus::Draining,
    ];
    q
}

async fn wait_for(registry: &Registry, want: impl Fn(&[HealthStatus]) -> bool) {
    let name = flotilla::core::ServiceName::new("users").unwrap();
    let all = any_status();
    loop {
        let (_, records) = registry.instances(&name, &all);
        let statuses: Vec<HealthStatus> = records.iter().map(|r| r.status).collect();
        if want(&statuses) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_registers_passes_its_check_and_deregisters_on_shutdown() {
    let (registry, url, stop) = registry().await;
    let mut reg = SelfRegistration::new(url);
    reg.check = flotilla::registry::Check::Http {
        path: "/health".into(),
        interval: std::time::Duration::from_millis(200),
        deregister_after: None,
    };
    let svc = TestService::start(
        Microservice::builder("users")
            .unwrap()
            .version("1.0.0")
            .register_with(reg),
    )
    .await;
    let within = std::time::Duration::from_secs(30);
    tokio::time::timeout(
        within,
        wait_for(&registry, |s| s == [HealthStatus::Passing]),
    )
    .await
    .expect("registered and passing");
    svc.stop().await.unwrap();
    // Deregistration happens in the drain hook, before the listener closes and before stop returns.
    let name = flotilla::core::ServiceName::new("users").unwrap();
    assert!(registry.instances(&name, &any_status()).1.is_empty());
    stop.cancel();
}

#[tokio::test]
async fn a_service_starts_even_when_the_registry_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reg = SelfRegistration::new(format!("http://127.0.0.1:{port}"));
    let svc = TestService::start(Microservice::builder("users").unwrap().register_with(reg)).await;
    assert_eq!(svc.get("/ready").await.status, 200);
    svc.stop().await.unwrap();
}
