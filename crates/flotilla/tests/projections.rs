//! Hosted projections: live from the checkpoint, rebuilt through the admin routes, and the
//! admin routes' protection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::eventsourcing::projection::{BoxError, Projection};
use flotilla::eventsourcing::{
    AppendResult, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Snapshot, StreamInfo, Version,
};
use flotilla::testing::{TestService, test_config};
use flotilla::{Microservice, ServiceConfig};
use flotilla_core::StreamId;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

/// Bounds a wait on the service, so that a regression fails the test instead of hanging it.
async fn within<T>(what: &str, wait: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A read model of the positions applied, which reports each apply and can hold the first
/// apply of a rebuild until released.
struct Positions {
    applied: Arc<Mutex<Vec<u64>>>,
    resets: Arc<AtomicU32>,
    tx: mpsc::UnboundedSender<u64>,
    hold_rebuild: Option<Arc<Notify>>,
    holding: bool,
    /// Holds every `reset` until released (a shutdown arriving mid-reset).
    hold_reset: Option<Arc<Notify>>,
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
        if let Some(hold) = &self.hold_reset {
            hold.notified().await;
        }
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
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let projection = |tx| Positions::new(tx, hold_rebuild);
    fixture_on(store, dyn_store, config, projection).await
}

impl Positions {
    fn new(tx: mpsc::UnboundedSender<u64>, hold_rebuild: Option<Arc<Notify>>) -> Self {
        Self {
            applied: Arc::default(),
            resets: Arc::default(),
            tx,
            hold_rebuild,
            holding: false,
            hold_reset: None,
        }
    }
}

/// A service hosting the projection `make` builds on `dyn_store` (which may wrap `store`).
async fn fixture_on(
    store: Arc<MemoryEventStore>,
    dyn_store: Arc<dyn EventStore>,
    config: ServiceConfig,
    make: impl FnOnce(mpsc::UnboundedSender<u64>) -> Positions,
) -> Fixture {
    let (tx, rx) = mpsc::unbounded_channel();
    let projection = make(tx);
    let (applied, resets) = (
        Arc::clone(&projection.applied),
        Arc::clone(&projection.resets),
    );
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
        let what = format!("applied event {} of {n} (got {out:?})", out.len() + 1);
        out.push(within(&what, rx.recv()).await.unwrap());
    }
    out
}

/// Waits until the latest rebuild is in `state` and returns it.
async fn rebuild_reaches(svc: &TestService, state: &str) -> Value {
    within(&format!("the rebuild to be {state}"), async {
        loop {
            let rebuild = rebuild_state(svc).await;
            if rebuild["state"] == state {
                return rebuild;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
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
    let body = within("the checkpoint to reach 2", async {
        loop {
            let body = f.svc.get("/admin/projections").await.json();
            if body["projections"][0]["checkpoint"] == 2 {
                return body;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
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
    rebuild_reaches(&f.svc, "done").await;
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
    rebuild_reaches(&f.svc, "done").await;
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
    let projection = || Positions::new(mpsc::unbounded_channel().0, None);
    let err = Microservice::builder("orders")
        .unwrap()
        .projection(store.clone(), projection())
        .projection(store, projection())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"positions\""), "{err}");
}

/// A memory store whose next `save_checkpoint(_, 0)` fails once armed: the write a rebuild
/// makes before it resets the read model.
#[derive(Debug)]
struct FailingCheckpoint {
    inner: Arc<MemoryEventStore>,
    armed: AtomicBool,
}

#[async_trait::async_trait]
impl EventStore for FailingCheckpoint {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> flotilla::eventsourcing::Result<AppendResult> {
        self.inner.append(stream, expected, events).await
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        read: ReadStream,
    ) -> flotilla::eventsourcing::Result<Vec<RecordedEvent>> {
        self.inner.read_stream(stream, read).await
    }
    async fn stream_version(
        &self,
        stream: &StreamId,
    ) -> flotilla::eventsourcing::Result<Option<Version>> {
        self.inner.stream_version(stream).await
    }
    async fn read_all(&self, read: ReadAll) -> flotilla::eventsourcing::Result<Vec<RecordedEvent>> {
        self.inner.read_all(read).await
    }
    async fn delete_stream(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
    ) -> flotilla::eventsourcing::Result<()> {
        self.inner.delete_stream(stream, expected).await
    }
    async fn truncate_stream(
        &self,
        stream: &StreamId,
        before: Version,
    ) -> flotilla::eventsourcing::Result<u64> {
        self.inner.truncate_stream(stream, before).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> flotilla::eventsourcing::Result<()> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> flotilla::eventsourcing::Result<Option<Snapshot>> {
        self.inner.load_snapshot(stream).await
    }
    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> flotilla::eventsourcing::Result<Vec<StreamInfo>> {
        self.inner.list_streams(after, limit).await
    }
    async fn list_checkpoints(&self) -> flotilla::eventsourcing::Result<Vec<(String, Position)>> {
        self.inner.list_checkpoints().await
    }
    async fn load_checkpoint(
        &self,
        subscriber: &str,
    ) -> flotilla::eventsourcing::Result<Option<Position>> {
        self.inner.load_checkpoint(subscriber).await
    }
    async fn save_checkpoint(
        &self,
        subscriber: &str,
        position: Position,
    ) -> flotilla::eventsourcing::Result<()> {
        if position == 0 && self.armed.swap(false, Ordering::SeqCst) {
            return Err(flotilla::eventsourcing::Error::storage(
                "relation \"checkpoints\" is locked",
            ));
        }
        self.inner.save_checkpoint(subscriber, position).await
    }
    fn head(&self) -> watch::Receiver<Position> {
        self.inner.head()
    }
}

#[tokio::test]
async fn a_rebuild_whose_checkpoint_write_fails_leaves_a_consistent_read_model() {
    let store = Arc::new(MemoryEventStore::new());
    let failing = Arc::new(FailingCheckpoint {
        inner: Arc::clone(&store),
        armed: AtomicBool::new(false),
    });
    let dyn_store: Arc<dyn EventStore> = failing.clone();
    let make = |tx| Positions::new(tx, None);
    let mut f = fixture_on(store, dyn_store, test_config(), make).await;
    append(&f.store, 3).await;
    assert_eq!(received(&mut f.rx, 3).await, [1, 2, 3]);

    failing.armed.store(true, Ordering::SeqCst);
    let path = "/admin/projections/positions/rebuild";
    assert_eq!(f.svc.call(Method::POST, path, &[], "").await.status, 202);
    let rebuild = rebuild_reaches(&f.svc, "failed").await;
    let error = rebuild["error"].as_str().unwrap();
    assert!(!error.contains("checkpoints"), "no storage detail: {error}");
    assert_eq!(
        *f.applied.lock().unwrap(),
        [1, 2, 3],
        "the checkpoint stayed at 3, so the read model must still hold 1..=3"
    );

    append(&f.store, 1).await;
    assert_eq!(received(&mut f.rx, 1).await, [4], "live again");
    f.svc.stop().await.unwrap();
    assert_eq!(*f.applied.lock().unwrap(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_shutdown_during_a_rebuild_makes_the_next_start_replay_from_zero() {
    let store = Arc::new(MemoryEventStore::new());
    let config = || ServiceConfig {
        shutdown_deadline: Duration::from_millis(200),
        ..test_config()
    };
    let held = Arc::new(Notify::new());
    let make = |tx| Positions {
        hold_reset: Some(Arc::clone(&held)),
        ..Positions::new(tx, None)
    };
    let mut f = fixture_on(Arc::clone(&store), store.clone(), config(), make).await;
    append(&f.store, 3).await;
    assert_eq!(received(&mut f.rx, 3).await, [1, 2, 3]);
    let path = "/admin/projections/positions/rebuild";
    assert_eq!(f.svc.call(Method::POST, path, &[], "").await.status, 202);
    within("the rebuild to reach reset", async {
        while f.resets.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Shut down while `reset` is in progress: the read model is (being) emptied.
    within("the service to stop", f.svc.stop()).await.unwrap();

    let make = |tx| Positions::new(tx, None);
    let mut g = fixture_on(Arc::clone(&store), store.clone(), config(), make).await;
    assert_eq!(
        received(&mut g.rx, 3).await,
        [1, 2, 3],
        "history is replayed into the emptied read model"
    );
    g.svc.stop().await.unwrap();
}

/// A read model in memory, hosted with `memory_projection`, holds the whole history after a
/// restart; hosted with `projection` it would resume after the stored checkpoint, empty.
#[tokio::test]
async fn a_memory_projection_is_rebuilt_from_the_start_at_every_start() {
    let store = Arc::new(MemoryEventStore::new());
    let start = |store: Arc<MemoryEventStore>| async move {
        let (tx, rx) = mpsc::unbounded_channel();
        let projection = Positions::new(tx, None);
        let applied = Arc::clone(&projection.applied);
        let builder = Microservice::builder("orders")
            .unwrap()
            .memory_projection(store, projection)
            .config(test_config());
        (TestService::start_with(builder).await, rx, applied)
    };
    let (svc, mut rx, _) = start(Arc::clone(&store)).await;
    append(&store, 3).await;
    assert_eq!(received(&mut rx, 3).await, [1, 2, 3]);
    svc.stop().await.unwrap();

    let (svc, mut rx, applied) = start(Arc::clone(&store)).await;
    append(&store, 1).await;
    assert_eq!(received(&mut rx, 4).await, [1, 2, 3, 4]);
    assert_eq!(*applied.lock().unwrap(), [1, 2, 3, 4]);
    svc.stop().await.unwrap();
}
