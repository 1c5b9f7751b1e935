//! When the catalog store fails, nothing is applied and the caller is told to retry.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{Method, StatusCode};
use flotilla_core::ServiceName;
use flotilla_discovery::Discovery;
use flotilla_discovery::catalog::{
    BoxFuture, CatalogStore, MemoryCatalogStore, StoreError, StoredCatalog, StoredEntry,
};
use flotilla_registry::{Options, Registry};

/// A store that fails every write while `broken` is set.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryCatalogStore,
    broken: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError("disk full".into()));
        }
        Ok(())
    }
}

impl CatalogStore for FlakyStore {
    fn load(&self) -> BoxFuture<'_, Result<StoredCatalog, StoreError>> {
        self.inner.load()
    }

    fn put(&self, entry: StoredEntry, index: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        match self.check() {
            Ok(()) => self.inner.put(entry, index),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn remove(
        &self,
        service: ServiceName,
        id: String,
        index: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        match self.check() {
            Ok(()) => self.inner.remove(service, id, index),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

#[tokio::test]
async fn a_failed_store_write_is_a_503_and_changes_nothing() {
    let store = Arc::new(FlakyStore::default());
    let r = Registry::new(Options::default(), store.clone())
        .await
        .unwrap();
    let users = ServiceName::new("users").unwrap();
    let body = common::registration("users", "a", 80, "");
    common::call(&r, Method::POST, "/api/v1/registry/instances", Some(&body)).await;
    let mut rx = r.watch(&users);
    rx.mark_unchanged();
    let before = r.snapshot(&users);

    store.broken.store(true, Ordering::SeqCst);
    let (status, headers, json) = common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/drain",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        !json["detail"].as_str().unwrap().contains("disk full"),
        "storage details stay in the log"
    );
    let (status, _, _) = common::call(
        &r,
        Method::DELETE,
        "/api/v1/registry/services/users/instances/a",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.snapshot(&users), before, "nothing applied");
    assert!(
        !rx.has_changed().unwrap(),
        "nobody was told about a change that did not happen"
    );

    store.broken.store(false, Ordering::SeqCst);
    let (status, _, _) = common::call(
        &r,
        Method::PUT,
        "/api/v1/registry/services/users/instances/a/drain",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the retry succeeds");
    let reloaded = Registry::new(Options::default(), Arc::new(store.inner.clone()))
        .await
        .unwrap();
    assert_eq!(
        reloaded.snapshot(&users),
        r.snapshot(&users),
        "what was acknowledged is what is stored"
    );
}
