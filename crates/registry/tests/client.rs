//! The registry client against a real registry over HTTP: the discovery cache and the
//! self-registration agent.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_core::error::Classify;
use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_discovery::{Discovery, HealthStatus, ServiceSet};
use flotilla_registry::{Options, Registration, Registry};
use flotilla_registry_client::{Agent, Check, ClientOptions, RegistryClient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn users() -> ServiceName {
    ServiceName::new("users").unwrap()
}

/// Starts a registry over `store` serving on `addr` (or a fresh port).
async fn start(
    store: &MemoryCatalogStore,
    addr: Option<SocketAddr>,
) -> (Registry, SocketAddr, CancellationToken) {
    let (r, run) = common::registry(store, Options::default()).await;
    let listener = match addr {
        Some(a) => tokio::net::TcpListener::bind(a).await.unwrap(),
        None => common::listener().await.0,
    };
    let addr = listener.local_addr().unwrap();
    common::serve(listener, r.router(), run.clone());
    (r, addr, run)
}

fn client(addr: SocketAddr) -> RegistryClient {
    let mut o = ClientOptions::new(format!("http://{addr}"));
    o.wait = Duration::from_secs(1);
    o.timeout = Duration::from_secs(1);
    o.min_backoff = Duration::from_millis(20);
    o.max_backoff = Duration::from_millis(200);
    RegistryClient::new(o).unwrap()
}

async fn wait_for(
    rx: &mut watch::Receiver<ServiceSet>,
    what: &str,
    f: impl Fn(&ServiceSet) -> bool,
) {
    let r = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s))).await;
    assert!(r.is_ok(), "gave up waiting for: {what}");
}

fn instance(id: &str, port: u16) -> ServiceInstance {
    let mut i = ServiceInstance::new(users(), "127.0.0.1", port);
    i.id = id.into();
    i
}

#[tokio::test]
async fn the_cache_follows_changes_and_keeps_the_last_set_when_the_registry_is_down() {
    // A service name no other test here uses, so the log line below is this test's.
    let name = ServiceName::new("keeper").unwrap();
    let (r, addr, run) = start(&MemoryCatalogStore::new(), None).await;
    let c = client(addr);
    let mut rx = c.watch(&name);
    let mut a = instance("a", 1);
    a.name = name.clone();
    r.register(Registration::new(a)).await.unwrap();
    wait_for(&mut rx, "a appears", |s| s.routable().count() == 1).await;
    r.drain(&name, "a").await.unwrap();
    wait_for(&mut rx, "a drains", |s| {
        s.routable().count() == 0 && s.endpoints.len() == 1
    })
    .await;
    let last = rx.borrow().clone();
    run.cancel();
    // The follower's own report that it polled and found no registry, for this service.
    let logs = flotilla_testkit::logs::CapturedLogs::global();
    let polled = tokio::time::timeout(Duration::from_secs(20), async {
        while !logs.contents().lines().any(|l| {
            l.contains("registry unreachable; keeping the last known set")
                && l.contains(name.as_str())
        }) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(
        polled.await.is_ok(),
        "the follower never found the registry gone"
    );
    assert_eq!(
        *c.watch(&name).borrow(),
        last,
        "the last known set survives the registry going away"
    );
}

#[tokio::test]
async fn a_service_that_starts_before_the_registry_registers_when_it_appears() {
    let addr = common::listener().await.1; // a free port, nobody listening yet
    let agent = Agent::start(
        client(addr),
        flotilla_registry_client::Registration::new(
            instance("early", 7),
            Check::Ttl {
                ttl: Duration::from_secs(30),
                deregister_after: None,
            },
        ),
    );
    let mut registered = agent.registered();
    // Something that takes the agent's connections and answers none, until the registry
    // starts: the agent must have tried (and failed) before there was a registry.
    let refuser = tokio::net::TcpListener::bind(addr).await.unwrap();
    for _ in 0..2 {
        let (conn, _) = tokio::time::timeout(Duration::from_secs(20), refuser.accept())
            .await
            .expect("the agent tries to register before the registry exists")
            .unwrap();
        drop(conn);
    }
    assert!(!*registered.borrow(), "nothing to register with yet");
    drop(refuser);
    let (r, _, _run) = start(&MemoryCatalogStore::new(), Some(addr)).await;
    tokio::time::timeout(Duration::from_secs(20), registered.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    let record = r.record(&users(), "early").unwrap();
    assert_eq!(
        record.status,
        HealthStatus::Passing,
        "registered, then heartbeated"
    );
}

#[tokio::test]
async fn the_agent_registers_again_when_a_restarted_registry_forgot_it() {
    let (_r, addr, run) = start(&MemoryCatalogStore::new(), None).await;
    let mut reg = flotilla_registry_client::Registration::new(
        instance("comeback", 8),
        Check::Http {
            path: "/health".into(),
            interval: Duration::from_secs(10),
            deregister_after: None,
        },
    );
    reg.verify_every = Duration::from_millis(100);
    let agent = Agent::start(client(addr), reg);
    let mut registered = agent.registered();
    tokio::time::timeout(Duration::from_secs(20), registered.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    run.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fresh, _, _run2) = start(&MemoryCatalogStore::new(), Some(addr)).await;
    let mut rx = fresh.watch(&users());
    wait_for(&mut rx, "re-registered", |s| {
        s.endpoints.iter().any(|e| e.instance.id == "comeback")
    })
    .await;
    assert_eq!(
        fresh.record(&users(), "comeback").unwrap().status,
        HealthStatus::Critical,
        "not routed until its check passes"
    );
}

#[tokio::test]
async fn a_draining_instance_leaves_discovery_before_the_agent_finishes_shutting_down() {
    let (r, addr, _run) = start(&MemoryCatalogStore::new(), None).await;
    let mut reg = flotilla_registry_client::Registration::new(
        instance("leaving", 9),
        Check::Ttl {
            ttl: Duration::from_secs(30),
            deregister_after: None,
        },
    );
    reg.drain_grace = Duration::from_secs(1);
    let agent = Agent::start(client(addr), reg);
    let caller = client(addr);
    let mut rx = caller.watch(&users());
    wait_for(&mut rx, "routable", |s| s.routable().count() == 1).await;
    let shutdown = tokio::spawn(agent.shutdown());
    wait_for(&mut rx, "draining seen by a caller", |s| {
        s.routable().count() == 0
            && s.endpoints
                .iter()
                .any(|e| e.status == HealthStatus::Draining)
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "callers saw the drain while the service was still up"
    );
    shutdown.await.unwrap().unwrap();
    assert!(
        r.record(&users(), "leaving").is_none(),
        "deregistered at the end"
    );
}

#[tokio::test]
async fn the_client_lists_services_and_instances_for_the_cli() {
    let (r, addr, _run) = start(&MemoryCatalogStore::new(), None).await;
    r.register(Registration::new(instance("a", 1)))
        .await
        .unwrap();
    let c = client(addr);
    let services = c.services().await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(
        (
            services[0].name.as_str(),
            services[0].instances,
            services[0].routable
        ),
        ("users", 1, 1)
    );
    let (revision, endpoints) = c
        .instances(&users(), None, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (revision, endpoints.len()),
        (r.snapshot(&users()).revision, 1)
    );
    let missing = client(common::listener().await.1)
        .services()
        .await
        .unwrap_err();
    assert!(
        missing.class().retryable,
        "an unreachable registry is worth retrying: {missing}"
    );
}

#[tokio::test]
async fn service_url_resolves_by_id_or_round_robin_from_the_cache() {
    let (r, addr, _run) = start(&MemoryCatalogStore::new(), None).await;
    r.register(Registration::new(instance("a", 1)))
        .await
        .unwrap();
    r.register(Registration::new(instance("b", 2)))
        .await
        .unwrap();
    let c = client(addr);
    let mut rx = c.watch(&users());
    wait_for(&mut rx, "both known", |s| s.routable().count() == 2).await;
    let urls: Vec<_> = (0..4)
        .map(|_| c.service_url(&users(), None).unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:1",
            "http://127.0.0.1:2"
        ]
    );
    assert_eq!(
        c.service_url(&users(), Some("b")).unwrap(),
        "http://127.0.0.1:2"
    );
    assert!(c.service_url(&users(), Some("zzz")).is_none());
}

#[tokio::test]
async fn a_replica_that_cannot_be_reached_hands_calls_to_the_next() {
    let (dead, _) = common::listener().await;
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (r, addr, _run) = start(&MemoryCatalogStore::new(), None).await;
    let mut o = ClientOptions::new(format!("http://{dead_addr}, http://{addr}"));
    o.wait = Duration::from_secs(1);
    o.timeout = Duration::from_secs(1);
    let c = RegistryClient::new(o).unwrap();
    r.register(Registration::new(instance("a", 1)))
        .await
        .unwrap();
    let services = c.services().await.unwrap();
    assert_eq!(services.len(), 1, "the call reached the live replica");
    let mut rx = c.watch(&users());
    wait_for(&mut rx, "a, followed through the live replica", |s| {
        s.routable().count() == 1
    })
    .await;
}
