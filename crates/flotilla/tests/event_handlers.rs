//! Event handlers on the `Microservice` builder: delivery, start-up failures, and what
//! shutdown does to handlers in flight. Time is paused: leases, timeouts and the shutdown
//! deadline pass without waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotilla::events::{Bus, HandlerError, MemoryBackend, Typed};
use flotilla::metrics::Metrics;
use flotilla::testing::test_config;
use flotilla::{Error, Microservice, MicroserviceBuilder, ServiceHandle, State};
use flotilla_testkit::prometheus;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

#[derive(Debug, Deserialize)]
struct OrderPlaced {
    order: u32,
}

struct Running {
    handle: ServiceHandle,
    join: JoinHandle<Result<(), Error>>,
    metrics: Metrics,
}

impl Running {
    async fn stop(self) {
        self.handle.shutdown();
        self.join.await.unwrap().unwrap();
    }

    fn counter(&self, name: &str) -> f64 {
        let samples = prometheus::parse(&self.metrics.encode()).unwrap();
        prometheus::sum(&samples, name, &[("group", "billing")])
    }
}

async fn start(builder: MicroserviceBuilder, deadline: Duration) -> Running {
    let config = flotilla::ServiceConfig {
        shutdown_deadline: deadline,
        ..test_config()
    };
    let service = builder.config(config).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (handle, metrics) = (service.handle(), service.metrics().clone());
    let join = tokio::spawn(service.serve(listener));
    while handle.state() == State::Starting {
        tokio::task::yield_now().await;
    }
    Running {
        handle,
        join,
        metrics,
    }
}

fn memory_bus() -> (Bus, Arc<MemoryBackend>) {
    let backend = Arc::new(MemoryBackend::new());
    (Bus::new(backend.clone()), backend)
}

async fn publish(bus: &Bus, order: u32) {
    bus.publish_json(
        "/shop",
        "orders.placed",
        &serde_json::json!({ "order": order }),
    )
    .await
    .unwrap();
}

async fn pending(bus: &Bus) -> u64 {
    let groups = bus.backend().groups().await.unwrap();
    groups
        .iter()
        .filter(|g| g.spec.name.as_str() == "billing")
        .map(|g| g.pending)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn events_reach_the_typed_handler_and_its_metrics_reach_the_service_registry() {
    let (bus, _) = memory_bus();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus.clone());
    let builder = builder.on_event("orders.*", "billing", move |e: Typed<OrderPlaced>| {
        let tx = tx.clone();
        async move {
            tx.send(e.data.order).unwrap();
            Ok(())
        }
    });
    let running = start(builder, Duration::from_secs(5)).await;
    for order in 1..=3 {
        publish(&bus, order).await;
    }
    let mut seen = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    seen.push(rx.recv().await.unwrap());
    assert_eq!(seen, [1, 2, 3]);
    while running.counter("flotilla_bus_acked_total") < 3.0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(running.counter("flotilla_bus_delivered_total"), 3.0);
    running.stop().await;
    assert_eq!(pending(&bus).await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_that_cannot_start_fails_start_up_naming_it() {
    let (bus, _) = memory_bus();
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus)
        .on_event("orders..bad", "billing", |_: Typed<OrderPlaced>| async {
            Ok(())
        });
    let service = builder.config(test_config()).build().unwrap();
    let handle = service.handle();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = service.serve(listener).await.unwrap_err();
    assert!(
        matches!(&err, Error::Subscription { subscription, .. } if subscription.contains("orders..bad")),
        "{err}"
    );
    assert_ne!(handle.state(), State::Running, "never reported ready");
}

#[test]
fn event_handlers_without_a_bus_are_refused_at_build() {
    let builder = Microservice::builder("billing").unwrap().on_event(
        "orders.*",
        "billing",
        |_: Typed<OrderPlaced>| async { Ok(()) },
    );
    let err = builder.build().unwrap_err();
    assert!(matches!(err, Error::Setup(_)), "{err}");
    assert!(err.to_string().contains(".events(bus)"), "{err}");
}

/// A handler that reports when it starts and finishes only when `release` is notified.
fn gated(
    started: mpsc::UnboundedSender<u32>,
    release: Arc<Notify>,
    calls: Arc<AtomicU32>,
) -> impl Fn(Typed<OrderPlaced>) -> futures_util::future::BoxFuture<'static, Result<(), HandlerError>>
+ Send
+ Sync
+ 'static {
    move |e: Typed<OrderPlaced>| {
        let (started, release) = (started.clone(), release.clone());
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            started.send(e.data.order).unwrap();
            release.notified().await;
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_an_in_flight_handler_finish_and_acks_it_once() {
    let (bus, _) = memory_bus();
    in_flight_handler_finishes_and_is_acked_once(bus).await;
}

#[tokio::test]
async fn on_sqlite_shutdown_lets_an_in_flight_handler_finish_and_acks_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let db =
        flotilla_sqlite::Database::open(flotilla_sqlite::Options::new(dir.path().join("bus.db")))
            .unwrap();
    let backend = flotilla_sqlite::bus::SqliteBus::open(db, Default::default()).unwrap();
    in_flight_handler_finishes_and_is_acked_once(Bus::new(Arc::new(backend))).await;
}

async fn in_flight_handler_finishes_and_is_acked_once(bus: Bus) {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, calls) = (Arc::new(Notify::new()), Arc::new(AtomicU32::new(0)));
    let handler = gated(started_tx, release.clone(), calls.clone());
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus.clone());
    let running = start(
        builder.on_event("orders.*", "billing", handler),
        Duration::from_secs(30),
    )
    .await;
    publish(&bus, 1).await;
    assert_eq!(started.recv().await, Some(1));

    running.handle.shutdown();
    while running.handle.state() == State::Running {
        tokio::task::yield_now().await;
    }
    // Readiness has flipped: this event must wait for another consumer.
    publish(&bus, 2).await;
    release.notify_one();
    let Running { join, metrics, .. } = running;
    join.await.unwrap().unwrap();

    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no event taken after readiness flipped"
    );
    let samples = prometheus::parse(&metrics.encode()).unwrap();
    let acked = prometheus::sum(
        &samples,
        "flotilla_bus_acked_total",
        &[("group", "billing")],
    );
    assert_eq!(acked, 1.0, "the in-flight event is acked exactly once");
    assert_eq!(pending(&bus).await, 1, "only the later event is left");

    // The next consumer gets the later event, and only it.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let next = bus
        .subscribe("orders.*")
        .group("billing")
        .typed_handler(move |e: Typed<OrderPlaced>| {
            let tx = tx.clone();
            async move {
                tx.send(e.data.order).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(rx.recv().await, Some(2));
    while pending(&bus).await > 0 {
        tokio::task::yield_now().await;
    }
    next.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_still_running_at_the_deadline_is_not_acked_and_comes_back() {
    let (bus, _) = memory_bus();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (never, calls) = (Arc::new(Notify::new()), Arc::new(AtomicU32::new(0)));
    let handler = gated(started_tx, never, calls);
    let builder = Microservice::builder("billing")
        .unwrap()
        .events(bus.clone());
    let running = start(
        builder.on_event("orders.*", "billing", handler),
        Duration::from_secs(2),
    )
    .await;
    publish(&bus, 7).await;
    assert_eq!(started.recv().await, Some(7));
    let acked_before_stop = running.counter("flotilla_bus_acked_total");
    let metrics = running.metrics.clone();
    running.stop().await;

    let samples = prometheus::parse(&metrics.encode()).unwrap();
    let acked = prometheus::sum(
        &samples,
        "flotilla_bus_acked_total",
        &[("group", "billing")],
    );
    assert_eq!((acked_before_stop, acked), (0.0, 0.0), "never acked");
    assert_eq!(pending(&bus).await, 1);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let next = bus
        .subscribe("orders.*")
        .group("billing")
        .typed_handler(move |e: Typed<OrderPlaced>| {
            let tx = tx.clone();
            async move {
                tx.send((e.data.order, e.received.attempt)).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(
        rx.recv().await,
        Some((7, 2)),
        "redelivered once its lease ended"
    );
    while pending(&bus).await > 0 {
        tokio::task::yield_now().await;
    }
    next.stop().await;
}
