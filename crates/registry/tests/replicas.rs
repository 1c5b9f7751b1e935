//! Two registries in one process sharing one PostgreSQL catalog (a schema unique to the run,
//! dropped afterwards): changes made on one replica reach the other's reads, blocking queries
//! and watches; heartbeats count wherever they land; each instance's check runs on one live
//! replica, and a dead replica's checks move to the other once its lease ends.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::call;
use flotilla_core::ServiceName;
use flotilla_discovery::{Discovery, HealthStatus};
use flotilla_postgres::catalog::PgCatalog;
use flotilla_registry::{Options, Registry};
use flotilla_testkit::{Backend, backend, unique_name};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: the tests wait for conditions, never assert how long they took.
const PATIENCE: Duration = Duration::from_secs(60);

struct Replica {
    registry: Registry,
    stop: CancellationToken,
    run: JoinHandle<()>,
}

struct Cluster {
    pg: flotilla_postgres::Options,
    store: PgCatalog,
}

impl Cluster {
    async fn new(suite: &str) -> Option<Self> {
        let url = backend(Backend::Postgres, suite)?;
        let pg = flotilla_postgres::Options {
            schema: unique_name("reg"),
            pool_size: 4,
            ..flotilla_postgres::Options::new(url)
        };
        let store = PgCatalog::open(&pg).await.expect("the catalog opens");
        Some(Self { pg, store })
    }

    /// A registry replica on its own store handle (its own pool and listener, as a separate
    /// process would have), running until stopped or aborted.
    async fn replica(&self) -> Replica {
        let store = PgCatalog::open(&self.pg).await.expect("the catalog opens");
        let options = Options {
            replica_lease: Duration::from_secs(2),
            catch_up_interval: Duration::from_millis(250),
            ..Options::default()
        };
        let registry = Registry::new(options, Arc::new(store)).await.unwrap();
        let stop = CancellationToken::new();
        let (runner, token) = (registry.clone(), stop.clone());
        let run = tokio::spawn(async move { runner.run(token).await });
        Replica {
            registry,
            stop,
            run,
        }
    }

    async fn drop_schema(self) {
        let client = self.store.pool().get().await.unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.pg.schema))
            .await
            .expect("the test schema is dropped");
    }
}

/// Polls `condition` until it holds; panics naming `what` after [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never happened: {what}");
}

fn users() -> ServiceName {
    ServiceName::new("users").unwrap()
}

async fn register(r: &Registry, body: serde_json::Value) {
    let (status, _, body) = call(
        r,
        Method::POST,
        "/api/v1/registry/instances",
        Some(&body.to_string()),
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
}

fn status_of(r: &Registry, id: &str) -> Option<HealthStatus> {
    r.record(&users(), id).map(|rec| rec.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_wakes_blocking_queries_and_watches_on_the_other() {
    let Some(cluster) = Cluster::new("registry replicas: changes").await else {
        return;
    };
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    let (_, headers, _) = call(
        &b.registry,
        Method::GET,
        "/api/v1/registry/services/users",
        None,
    )
    .await;
    let index = headers[flotilla_registry::REVISION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    let blocked = b.registry.clone();
    let query = tokio::spawn(async move {
        let uri = format!("/api/v1/registry/services/users?index={index}&wait=60s");
        call(&blocked, Method::GET, &uri, None).await
    });
    let (_, headers, _) = call(&b.registry, Method::GET, "/v1/health/service/users", None).await;
    let consul_index = headers["x-consul-index"].to_str().unwrap().to_owned();
    let consul = b.registry.clone();
    let consul_query = tokio::spawn(async move {
        let uri = format!("/v1/health/service/users?index={consul_index}&wait=60s");
        call(&consul, Method::GET, &uri, None).await
    });
    let mut watch = b.registry.watch(&users());
    register(
        &a.registry,
        json!({"id": "u1", "name": "users", "address": "127.0.0.1", "port": 9001}),
    )
    .await;

    let (status, _, body) = query.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.to_string().contains("\"u1\""),
        "B's blocking query answers with u1: {body}"
    );
    let (status, _, body) = consul_query.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.to_string().contains("u1"),
        "B's Consul blocking query wakes: {body}"
    );
    // A `watch::Ref` held across a write would block it: keep only whether it woke.
    let seen = tokio::time::timeout(PATIENCE, watch.wait_for(|set| set.endpoints.len() == 1))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(seen, "B's watch wakes with the instance");
    let on_a = a.registry.record(&users(), "u1").unwrap();
    let on_b = b.registry.record(&users(), "u1").unwrap();
    assert_eq!(
        on_a, on_b,
        "both replicas hold the same record, indexes included"
    );

    let mut watch_a = a.registry.watch(&users());
    let (status, _, _) = call(
        &b.registry,
        Method::DELETE,
        "/api/v1/registry/services/users/instances/u1",
        None,
    )
    .await;
    assert!(status.is_success(), "deregistering on B: {status}");
    let gone = tokio::time::timeout(PATIENCE, watch_a.wait_for(|set| set.endpoints.is_empty()))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(gone, "the deregistration reaches A");
    assert!(a.registry.record(&users(), "u1").is_none());
    let (ia, ib) = (a.registry.index(), b.registry.index());
    eventually("both replicas reach the same catalog index", || {
        a.registry.index() == b.registry.index()
    })
    .await;
    assert!(
        ia > on_a.modify_index && ib > on_b.modify_index,
        "indexes only grow"
    );
    a.stop.cancel();
    b.stop.cancel();
    cluster.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_heartbeat_accepted_by_the_replica_not_running_the_check_keeps_it_passing() {
    let Some(cluster) = Cluster::new("registry replicas: ttl").await else {
        return;
    };
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    register(
        &a.registry,
        json!({"id": "t1", "name": "users", "address": "127.0.0.1", "port": 9002,
               "status": "passing", "check": {"type": "ttl", "ttl": "3s"}}),
    )
    .await;
    let (owner, other) = loop {
        // Both replicas renew their leases; wait until they agree on who checks t1.
        let (on_a, on_b) = (
            a.registry.runs_check(&users(), "t1"),
            b.registry.runs_check(&users(), "t1"),
        );
        if on_a != on_b
            && a.registry.record(&users(), "t1").is_some()
            && b.registry.record(&users(), "t1").is_some()
        {
            break if on_a { (&a, &b) } else { (&b, &a) };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Heartbeats only through the replica that does not run the TTL check, ten per TTL,
    // over three TTLs: the check must see them and leave the instance passing.
    for _ in 0..30 {
        let (status, _, body) = call(
            &other.registry,
            Method::PUT,
            "/v1/agent/check/pass/service:t1",
            None,
        )
        .await;
        assert!(status.is_success(), "{status}: {body}");
        assert_eq!(
            status_of(&owner.registry, "t1"),
            Some(HealthStatus::Passing)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Without heartbeats the owner fails it, and the other replica sees that.
    eventually(
        "the missed TTL turns the instance critical on both replicas",
        || {
            status_of(&owner.registry, "t1") == Some(HealthStatus::Critical)
                && status_of(&other.registry, "t1") == Some(HealthStatus::Critical)
        },
    )
    .await;
    a.stop.cancel();
    b.stop.cancel();
    cluster.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_on_one_live_replica_and_move_when_it_dies() {
    let Some(cluster) = Cluster::new("registry replicas: check ownership").await else {
        return;
    };
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((conn, _)) = target.accept().await {
            drop(conn);
        }
    });
    let (a, b) = (cluster.replica().await, cluster.replica().await);
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    for id in &ids {
        register(
            &a.registry,
            json!({"id": id, "name": "users", "address": "127.0.0.1", "port": port,
                   "check": {"type": "tcp", "interval": "200ms", "timeout": "100ms"}}),
        )
        .await;
    }
    eventually(
        "every instance is checked by exactly one replica, both taking a share",
        || {
            let on_a = ids
                .iter()
                .filter(|id| a.registry.runs_check(&users(), id))
                .count();
            let on_b = ids
                .iter()
                .filter(|id| b.registry.runs_check(&users(), id))
                .count();
            let each_once = ids.iter().all(|id| {
                a.registry.runs_check(&users(), id) != b.registry.runs_check(&users(), id)
            });
            each_once && on_a > 0 && on_b > 0
        },
    )
    .await;
    eventually("every check's result shows on both replicas", || {
        ids.iter().all(|id| {
            status_of(&a.registry, id) == Some(HealthStatus::Passing)
                && status_of(&b.registry, id) == Some(HealthStatus::Passing)
        })
    })
    .await;

    // A dies without ending its lease (its tasks stop, nothing tells the store).
    a.run.abort();
    assert!(a.run.await.unwrap_err().is_cancelled());
    eventually("B runs every check once A's lease has expired", || {
        ids.iter().all(|id| b.registry.runs_check(&users(), id))
    })
    .await;
    accept.abort();
    eventually(
        "B's checks keep judging: the target is gone, so all turn critical",
        || {
            ids.iter()
                .all(|id| status_of(&b.registry, id) == Some(HealthStatus::Critical))
        },
    )
    .await;
    b.stop.cancel();
    b.run.await.unwrap();
    cluster.drop_schema().await;
}
