//! The PostgreSQL registry catalog passes the catalog conformance suite (entries and index
//! survive a reopen) and the shared-catalog suite (two handles standing for two replicas),
//! each in its own schema, unique per run and dropped afterwards.
#![cfg(feature = "catalog")]

use flotilla_postgres::Options;
use flotilla_postgres::catalog::PgCatalog;
use flotilla_testkit::{Backend, backend, unique_name};

async fn options(suite: &str) -> Option<Options> {
    let url = backend(Backend::Postgres, suite)?;
    Some(Options {
        schema: unique_name("cat"),
        pool_size: 8,
        ..Options::new(url)
    })
}

async fn drop_schema(store: &PgCatalog, options: &Options) {
    let client = store
        .pool()
        .get()
        .await
        .expect("a connection to drop the schema");
    client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", options.schema))
        .await
        .expect("the test schema is dropped");
}

#[tokio::test]
async fn postgres_catalog_passes_the_conformance_suite_across_a_reopen() {
    let Some(options) = options("postgres catalog conformance").await else {
        return;
    };
    let store = PgCatalog::open(&options).await.expect("the catalog opens");
    let reopened = PgCatalog::open(&options)
        .await
        .expect("the catalog reopens");
    let keep = reopened.clone();
    flotilla_discovery::catalog::conformance(store, move |old| {
        drop(old);
        reopened
    })
    .await;
    drop_schema(&keep, &options).await;
}

#[tokio::test]
async fn postgres_catalog_passes_the_shared_conformance_suite() {
    let Some(options) = options("postgres shared catalog conformance").await else {
        return;
    };
    let a = PgCatalog::open(&options).await.expect("replica a opens");
    let b = PgCatalog::open(&options).await.expect("replica b opens");
    flotilla_discovery::catalog::shared_conformance(&a, &b).await;
    drop_schema(&a, &options).await;
}
