//! Hosted projections: live from the checkpoint, rebuilt through the admin routes, and the
//! admin routes' protection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{
    EventStore, ExpectedVersion, MemoryEventStore, NewEvent, RecordedEvent,
};
use flotilla::testing::{TestService, test_config};
use flotilla::{Microservice, ServiceConfig};
use flotilla_core::StreamId;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// A read model of the positions applied, which reports each apply and can hold the first
/// apply of a rebuild until released.
struct Positions {
    applied: Arc<Mutex<Vec<u64>>>,
    resets: Arc<AtomicU32>,
    tx: mpsc::UnboundedSender<u64>,
    hold_rebuild: Option<Arc<Notify>>,
    holding: bool,
}

#[async_trait::async_trait]
impl Projection for Positions {
    fn name(&self) -> &str {
        "positions"
    }

    async fn apply(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.tx.send(event.position)?;
        if std::mem::take(&mut self.holding)
            && let Some(hold) = &self.hold_rebuild
        {
            hold.notified().await;
        }
        self.applied.lock().unwrap().push(event.position);
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.applied.lock().unwrap().clear();
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.holding = self.hold_rebuild.is_some();
        Ok(())
    }
}

struct Fixture {
    store: Arc<MemoryEventStore>,
    applied: Arc<Mutex<Vec<u64>>>,
    resets: Arc<AtomicU32>,
    rx: mpsc::UnboundedReceiver<u64>,
    svc: TestService,
}

async fn fixture(config: ServiceConfig, hold_rebuild: Option<Arc<Notify>>) -> Fixture {
    let store = Arc::new(MemoryEventStore::new());
    let (tx, rx) = mpsc::unbounded_channel();
    let (applied, resets) = (Arc::default(), Arc::new(AtomicU32::new(0)));
    let projection = Positions {
        applied: Arc::clone(&applied),
        resets: Arc::clone(&resets),
        tx,
        hold_rebuild,
        holding: false,
    };
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let builder = Microservice::builder("orders")
        .unwrap()
        .projection(dyn_store, projection)
        .config(config);
    let svc = TestService::start_with(builder).await;
    Fixture {
        store,
        applied,
        resets,
        rx,
        svc,
    }
}

async fn append(store: &MemoryEventStore, n: u32) {
    let stream = StreamId::new("order-1").unwrap();
    for i in 0..n {
        let event = NewEvent::new("OrderPlaced", json!({ "i": i }));
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
}

async fn received(rx: &mut mpsc::UnboundedReceiver<u64>, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(rx.recv().await.unwrap());
    }
    out
}

async fn rebuild_state(svc: &TestService) -> Value {
    let res = svc.get("/admin/projections/positions").await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    res.json()["rebuild"].clone()
}

#[tokio::test]
async fn a_hosted_projection_follows_the_store_and_reports_its_state() {
    let mut f = fixture(test_config(), None).await;
    append(&f.store, 2).await;
    assert_eq!(received(&mut f.rx, 2).await, [1, 2]);
    let body = loop {
        let body = f.svc.get("/admin/projections").await.json();
        if body["projections"][0]["checkpoint"] == 2 {
            break body;
        }
        tokio::task::yield_now().await;
    };
    let p = &body["projections"][0];
    assert_eq!(p["name"], "positions");
    assert_eq!(p["state"], "live");
    assert_eq!((p["head"].as_u64(), p["lag"].as_u64()), (Some(2), Some(0)));
    assert!(p["rebuild"].is_null());
    f.svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_rebuild_empties_the_read_model_replays_history_then_resumes_live() {
    let mut f = fixture(test_config(), None).await;
    append(&f.store, 3).await;
    assert_eq!(received(&mut f.rx, 3).await, [1, 2, 3]);

    let res = f
        .svc
        .call(
            Method::POST,
            "/admin/projections/positions/rebuild",
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, 202, "{:?}", res.body);
    assert_eq!(res.json()["rebuild"]["id"], 1);
    assert_eq!(res.json()["rebuild"]["target"], 3);
    assert_eq!(received(&mut f.rx, 3).await, [1, 2, 3], "replayed");
    while rebuild_state(&f.svc).await["state"] != "done" {
        tokio::task::yield_now().await;
    }
    assert_eq!(rebuild_state(&f.svc).await["position"], 3);

    append(&f.store, 1).await;
    assert_eq!(
        received(&mut f.rx, 1).await,
        [4],
        "live again after the rebuild"
    );
    assert_eq!(f.resets.load(Ordering::SeqCst), 1);
    f.svc.stop().await.unwrap();
    assert_eq!(
        *f.applied.lock().unwrap(),
        [1, 2, 3, 4],
        "no event lost or doubled"
    );
}

#[tokio::test]
async fn a_second_rebuild_while_one_runs_is_a_conflict_and_unknown_names_are_not_found() {
    let hold = Arc::new(Notify::new());
    let mut f = fixture(test_config(), Some(hold.clone())).await;
    append(&f.store, 2).await;
    assert_eq!(received(&mut f.rx, 2).await, [1, 2]);
    let path = "/admin/projections/positions/rebuild";
    assert_eq!(f.svc.call(Method::POST, path, &[], "").await.status, 202);
    assert_eq!(
        received(&mut f.rx, 1).await,
        [1],
        "the rebuild is under way"
    );

    let res = f.svc.call(Method::POST, path, &[], "").await;
    assert_eq!(res.status, 409);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert!(
        res.json()["detail"]
            .as_str()
            .unwrap()
            .contains("still running")
    );

    hold.notify_one();
    while rebuild_state(&f.svc).await["state"] != "done" {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        f.svc.call(Method::POST, path, &[], "").await.status,
        202,
        "a new one may start"
    );

    let missing = f
        .svc
        .call(Method::POST, "/admin/projections/nope/rebuild", &[], "")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(f.svc.get("/admin/projections/nope").await.status, 404);
    f.svc.stop().await.unwrap();
}

#[tokio::test]
async fn with_an_admin_token_admin_routes_need_it() {
    let config = ServiceConfig {
        admin_token: Some("s3cret".into()),
        ..test_config()
    };
    let f = fixture(config, None).await;
    let res = f.svc.get("/admin/projections").await;
    assert_eq!(res.status, 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    let wrong = [("authorization", "Bearer guess")];
    let res = f
        .svc
        .call(Method::GET, "/admin/projections", &wrong, "")
        .await;
    assert_eq!(res.status, 401);
    let right = [("authorization", "Bearer s3cret")];
    let res = f
        .svc
        .call(Method::GET, "/admin/projections", &right, "")
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        f.svc.get("/health").await.status,
        200,
        "other routes stay open"
    );
    f.svc.stop().await.unwrap();
}

#[test]
fn two_projections_of_one_name_are_refused_at_build() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let projection = || Positions {
        applied: Arc::default(),
        resets: Arc::default(),
        tx: mpsc::unbounded_channel().0,
        hold_rebuild: None,
        holding: false,
    };
    let err = Microservice::builder("orders")
        .unwrap()
        .projection(store.clone(), projection())
        .projection(store, projection())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"positions\""), "{err}");
}
