//! The platform scenario: services publish, consume and append through the real platform
//! backend (`PlatformBus`, `PlatformEventStore`) against the real bus and event-store HTTP
//! APIs of a control plane over the in-memory engines, while the network and the control
//! plane fail. The engines outlive a crash of the control plane's host, as its SQLite file
//! does, so a restart loses connections and in-flight requests, never stored data.
//!
//! Every publish and append is retried with the same ids until acknowledged, as the contracts
//! ask. Invariants once every fault is healed: every acknowledged publish is delivered; nothing
//! is delivered that was not published; the topic stores each event once (publisher dedupe
//! held across retries); each append is stored exactly once (idempotent by event id) at
//! contiguous versions.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use flotilla_bus::{Backend, GroupName, GroupSpec, MemoryBackend, Outgoing};
use flotilla_core::error::Classify;
use flotilla_core::{CloudEvent, StreamId, TopicName, TopicPattern};
use flotilla_eventstore::{
    EventStore, ExpectedVersion, MemoryEventStore, NewEvent, ReadAll, RecordedEvent,
};
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_platform::{ConnectOptions, ControlPlane};

use crate::faults::{self, Topology};
use crate::net;

const CONTROL: &str = "control";
const PUBLISHER: &str = "publisher";
const CONSUMER: &str = "consumer";
const APPENDER: &str = "appender";
const EVENTS: usize = 30;
const APPENDS: usize = 24;
const STREAMS: usize = 3;
const WINDOW: Duration = Duration::from_secs(30);
/// Once healed, everything acknowledged must be delivered within this much simulated time.
/// Generous: the control plane's clock restarts with its host (see docs/RELIABILITY.md), so a
/// lease taken before a crash can outlast the crash by the time the host had been up.
const SETTLE: Duration = Duration::from_secs(90);

fn group() -> GroupName {
    GroupName::new("sim").expect("a valid group")
}

/// A client of the control plane at `host`.
pub(crate) fn plane(host: &str) -> ControlPlane {
    let mut options = ConnectOptions::new(net::url(host));
    options.timeout = Duration::from_secs(1);
    ControlPlane::with_dialer(options, net::platform_dialer()).expect("valid options")
}

/// What the clients acknowledged and received, read by the checks.
#[derive(Default)]
struct Observed {
    published: BTreeSet<String>,
    delivered: BTreeMap<String, usize>,
    appended: BTreeSet<uuid::Uuid>,
    group_declared: bool,
}

type Shared = Rc<RefCell<Observed>>;

/// Retries `op` while it fails with a retryable error, as a caller of the contracts must.
pub(crate) async fn until_done<
    T,
    E: Classify + std::fmt::Display,
    F: Future<Output = Result<T, E>>,
>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> Result<T, String> {
    loop {
        match op().await {
            Ok(done) => return Ok(done),
            Err(e) if e.class().retryable => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(format!("{what}: {e} (not retryable)")),
        }
    }
}

/// What a publisher host does in the bus scenarios: declares `group` on `sim.>` (events
/// published before a group exists are not kept for it), then publishes one event per id to
/// `topic`, each until it is acknowledged, telling `declared` and `acknowledged` as it goes.
pub(crate) async fn declare_then_publish(
    group: GroupName,
    topic: TopicName,
    ids: impl Iterator<Item = String>,
    declared: impl FnOnce(),
    mut acknowledged: impl FnMut(String),
) -> Result<(), Box<dyn std::error::Error>> {
    let bus = PlatformBus::new(plane(CONTROL));
    let spec = GroupSpec {
        name: group,
        pattern: TopicPattern::new("sim.>")?,
    };
    until_done("declare", || bus.declare_group(&spec)).await?;
    declared();
    for id in ids {
        let mut event = CloudEvent::new("/simulation", topic.as_str());
        event.id = id;
        let publish = || bus.publish(vec![Outgoing::new(topic.clone(), event.clone())]);
        until_done("publish", publish).await?;
        acknowledged(event.id);
    }
    Ok(())
}

pub(crate) fn control_host(
    sim: &mut turmoil::Sim<'_>,
    bus: Arc<MemoryBackend>,
    store: Arc<MemoryEventStore>,
) {
    sim.host(CONTROL, move || {
        let broker = flotilla_broker::Broker::new(Default::default(), bus.clone());
        let api = flotilla_store::StoreApi::new(Default::default(), store.clone());
        async move {
            let router = broker?.router().merge(api?.router());
            net::serve(router).await?;
            Ok(())
        }
    });
}

fn publisher_host(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    let shared = Rc::clone(shared);
    sim.host(PUBLISHER, move || {
        let shared = Rc::clone(&shared);
        async move {
            let ids = (0..EVENTS).map(|n| format!("ev-{n}"));
            declare_then_publish(
                group(),
                TopicName::new("sim.orders")?,
                ids,
                || shared.borrow_mut().group_declared = true,
                |id| {
                    shared.borrow_mut().published.insert(id);
                },
            )
            .await?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

fn consumer_host(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    let shared = Rc::clone(shared);
    sim.host(CONSUMER, move || {
        let shared = Rc::clone(&shared);
        async move {
            let bus = PlatformBus::new(plane(CONTROL));
            loop {
                if !shared.borrow().group_declared {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let lease = Duration::from_secs(2);
                let got = bus
                    .receive(&group(), 8, lease, Duration::from_secs(1))
                    .await;
                let Ok(deliveries) = got else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                for d in deliveries {
                    *shared
                        .borrow_mut()
                        .delivered
                        .entry(d.event.id.clone())
                        .or_default() += 1;
                    // A lost ack only brings the event back: at-least-once.
                    let _ = bus.ack(&d.receipt).await;
                }
            }
        }
    });
}

/// The `n`th append's event: its id fixed by the seed, so every retry carries the same one.
fn append_event(seed: u64, n: usize) -> NewEvent {
    let mut event = NewEvent::new("Deposited", serde_json::json!({ "n": n }));
    event.id = uuid::Uuid::from_u64_pair(seed, n as u64);
    event
}

fn appender_host(sim: &mut turmoil::Sim<'_>, shared: &Shared, seed: u64) {
    let shared = Rc::clone(shared);
    sim.host(APPENDER, move || {
        let shared = Rc::clone(&shared);
        async move {
            let store = PlatformEventStore::connect(plane(CONTROL)).await?;
            for n in 0..APPENDS {
                let stream = StreamId::new(format!("acct-{}", n % STREAMS))?;
                let event = append_event(seed, n);
                let append = || store.append(&stream, ExpectedVersion::Any, vec![event.clone()]);
                until_done("append", append).await?;
                shared.borrow_mut().appended.insert(event.id);
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

fn settled(o: &Observed) -> bool {
    o.published.len() == EVENTS
        && o.appended.len() == APPENDS
        && o.published.iter().all(|id| o.delivered.contains_key(id))
}

/// What the engines hold, read after the simulation on a runtime of its own.
fn stored(
    bus: &MemoryBackend,
    store: &MemoryEventStore,
) -> Result<(u64, Vec<RecordedEvent>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let topics = bus.topics().await.map_err(|e| e.to_string())?;
        let published = topics.iter().map(|t| t.published).sum();
        let all = store
            .read_all(ReadAll::after(0, 10_000))
            .await
            .map_err(|e| e.to_string())?;
        Ok((published, all))
    })
}

fn check_safety(o: &Observed, published: u64, all: &[RecordedEvent]) -> Result<(), String> {
    if let Some(id) = o.delivered.keys().find(|id| !o.published.contains(*id)) {
        return Err(format!("{id} was delivered but never published"));
    }
    if published != EVENTS as u64 {
        return Err(format!(
            "{published} events stored for {EVENTS} distinct ids"
        ));
    }
    let ids: BTreeSet<_> = all.iter().map(|e| e.id).collect();
    if all.len() != APPENDS || ids != o.appended {
        return Err(format!(
            "{} events stored for {APPENDS} acknowledged appends",
            all.len()
        ));
    }
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in all {
        versions
            .entry(e.stream.as_str())
            .or_default()
            .push(e.version);
    }
    for (stream, v) in versions {
        if v != (1..=v.len() as u64).collect::<Vec<_>>() {
            return Err(format!("{stream} has versions {v:?}"));
        }
    }
    Ok(())
}

/// One seed of the scenario.
pub(crate) fn run(seed: u64) -> Result<(), String> {
    let mut rng = faults::rng(seed);
    let mut sim = faults::builder(seed, &mut rng).build();
    let (bus, store) = (
        Arc::new(MemoryBackend::new()),
        Arc::new(MemoryEventStore::new()),
    );
    let shared: Shared = Rc::default();
    control_host(&mut sim, Arc::clone(&bus), Arc::clone(&store));
    publisher_host(&mut sim, &shared);
    consumer_host(&mut sim, &shared);
    appender_host(&mut sim, &shared, seed);
    let net = Topology {
        server: CONTROL,
        clients: vec![PUBLISHER, CONSUMER, APPENDER],
        restartable: vec![],
    };
    let plan = faults::schedule(&mut rng, &net, WINDOW);
    let described = format!("{plan:?}");
    let outcome = faults::drive(&mut sim, &net, plan, WINDOW, SETTLE, || {
        settled(&shared.borrow())
    });
    let o = shared.borrow();
    let (published, all) = stored(&bus, &store)?;
    outcome
        .and_then(|_| check_safety(&o, published, &all))
        .map_err(|why| {
            format!(
                "{why}\n  acknowledged {} publishes, {} appends; delivered {} ids\n  faults: {described}",
                o.published.len(),
                o.appended.len(),
                o.delivered.len()
            )
        })
}
