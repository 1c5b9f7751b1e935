//! The first calls of a process that just started: its discovery cache is fed by a real
//! registry over HTTP and has not answered yet when the first call is made.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use flotilla_client::{Error, ServiceClient};
use flotilla_discovery::catalog::MemoryCatalogStore;
use flotilla_registry::{Options, Registration, Registry};
use flotilla_registry_client::{ClientOptions, RegistryClient};
use support::{closed_port, instance, serve};
use tokio_util::sync::CancellationToken;

/// A registry serving its HTTP API on a fresh port, until the token is cancelled.
async fn registry() -> (Registry, String, CancellationToken) {
    let store = Arc::new(MemoryCatalogStore::new());
    let r = Registry::new(Options::default(), store).await.unwrap();
    let stop = CancellationToken::new();
    let (runner, token) = (r.clone(), stop.clone());
    tokio::spawn(async move { runner.run(token).await });
    let addr = serve(r.router()).await;
    (r, format!("http://{addr}"), stop)
}

/// A discovery cache fed by the registry at `url`, as a service process has it.
fn remote(url: String) -> Arc<RegistryClient> {
    let mut o = ClientOptions::new(url);
    o.timeout = Duration::from_secs(1);
    o.min_backoff = Duration::from_millis(20);
    o.max_backoff = Duration::from_millis(200);
    Arc::new(RegistryClient::new(o).unwrap())
}

#[tokio::test]
async fn the_first_call_of_a_fresh_process_reaches_an_instance_the_registry_already_has() {
    let users = serve(Router::new().route("/users/{id}", get(|| async { "ada" }))).await;
    let (r, url, _stop) = registry().await;
    r.register(Registration::new(instance("users", users)))
        .await
        .unwrap();
    // A new client, so a new, empty cache: the call is made before any answer came back.
    let client = ServiceClient::new(remote(url));
    let resp = client.service("users").get("/users/1").send().await;
    assert_eq!(resp.unwrap().text(), "ada");
}

#[tokio::test]
async fn a_service_the_registry_knows_no_instance_of_fails_without_waiting() {
    let (_r, url, _stop) = registry().await;
    let client = ServiceClient::builder(remote(url))
        .discovery_wait(Duration::from_secs(60))
        .build();
    let call = client.service("nobody").get("/").send();
    let err = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("a known empty set fails at once, not after the discovery wait")
        .unwrap_err();
    assert!(matches!(err, Error::NoHealthyInstance { .. }), "{err:?}");
}

#[tokio::test]
async fn with_the_registry_down_a_call_gives_up_after_the_discovery_wait() {
    let down = closed_port().await;
    let client = ServiceClient::builder(remote(format!("http://{down}")))
        .discovery_wait(Duration::from_millis(300))
        .build();
    let started = std::time::Instant::now();
    let err = client.service("users").get("/").send().await.unwrap_err();
    assert!(matches!(err, Error::NoHealthyInstance { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
}
