//! The push scenario: the broker's push subscription (the real delivery engine and its HTTP
//! client) POSTs each event to a receiver service, while a publisher publishes through the
//! real platform backend, and the network, the control plane and the receiver fail.
//!
//! Invariants once every fault is healed: every acknowledged publish reaches the receiver
//! (at least once: a push whose answer was lost comes again); the receiver gets nothing that
//! was not published; nothing is dead-lettered (the policy allows far more attempts than the
//! faults can cost).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use flotilla_broker::{Broker, Options, PushOptions};
use flotilla_bus::{Backend, DlqQuery, GroupName, MemoryBackend};
use flotilla_core::{CloudEvent, TopicName};
use tokio_util::sync::CancellationToken;

use crate::faults::{self, Topology};
use crate::net;
use crate::platform::declare_then_publish;

const CONTROL: &str = "control";
const PUBLISHER: &str = "publisher";
const RECEIVER: &str = "receiver";
const EVENTS: usize = 20;
const WINDOW: Duration = Duration::from_secs(30);
/// As in the platform scenario: room for leases that outlast a crash of the control plane.
const SETTLE: Duration = Duration::from_secs(90);

fn push_options() -> PushOptions {
    serde_json::from_value(serde_json::json!({
        "group": "push",
        "pattern": "sim.>",
        "url": format!("{}/hook", net::url(RECEIVER)),
        "timeout_ms": 1000,
        "policy": { "max_deliveries": 10_000 },
    }))
    .expect("valid push options")
}

#[derive(Default)]
struct Observed {
    published: BTreeSet<String>,
    group_declared: bool,
}

type Shared = Rc<RefCell<Observed>>;
/// Shared with the receiver's handler, which runs on its host's runtime and must be `Send`.
type Received = Arc<Mutex<BTreeMap<String, usize>>>;

fn control_host(sim: &mut turmoil::Sim<'_>, bus: Arc<MemoryBackend>) {
    sim.host(CONTROL, move || {
        let options = Options {
            push: vec![push_options()],
            ..Options::default()
        };
        let broker = Broker::new(options, bus.clone()).map(|b| b.with_dialer(net::broker_dialer()));
        async move {
            let broker = broker?;
            let pushing = broker.clone();
            // Never cancelled: a crash drops the host's tasks.
            tokio::task::spawn_local(async move { pushing.run(CancellationToken::new()).await });
            net::serve(broker.router()).await?;
            Ok(())
        }
    });
}

fn receiver_host(sim: &mut turmoil::Sim<'_>, received: &Received) {
    let received = Arc::clone(received);
    sim.host(RECEIVER, move || {
        let received = Arc::clone(&received);
        async move {
            let record = move |body: axum::body::Bytes| async move {
                let event = CloudEvent::from_json_slice(&body).map_err(|e| e.to_string());
                let id = event.expect("the broker pushes CloudEvents").id;
                *received
                    .lock()
                    .expect("not poisoned")
                    .entry(id)
                    .or_default() += 1;
            };
            net::serve(axum::Router::new().route("/hook", post(record))).await?;
            Ok(())
        }
    });
}

fn publisher_host(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    let shared = Rc::clone(shared);
    sim.host(PUBLISHER, move || {
        let shared = Rc::clone(&shared);
        async move {
            // The push subscription's own group, declared before anything is published.
            let ids = (0..EVENTS).map(|n| format!("push-{n}"));
            declare_then_publish(
                GroupName::new("push")?,
                TopicName::new("sim.pushed")?,
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

fn dead_letters(bus: &MemoryBackend) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let query = DlqQuery::default();
    let list = runtime
        .block_on(bus.dlq_list(&query))
        .map_err(|e| e.to_string())?;
    Ok(list.len())
}

/// One seed of the scenario.
pub(crate) fn run(seed: u64) -> Result<(), String> {
    let mut rng = faults::rng(seed);
    let mut sim = faults::builder(seed, &mut rng).build();
    let bus = Arc::new(MemoryBackend::new());
    let shared: Shared = Rc::default();
    let received: Received = Arc::default();
    control_host(&mut sim, Arc::clone(&bus));
    receiver_host(&mut sim, &received);
    publisher_host(&mut sim, &shared);
    let net = Topology {
        server: CONTROL,
        clients: vec![PUBLISHER, RECEIVER],
        restartable: vec![RECEIVER],
    };
    let plan = faults::schedule(&mut rng, &net, WINDOW);
    let described = format!("{plan:?}");
    let settled = || {
        let o = shared.borrow();
        let got = received.lock().expect("not poisoned");
        o.published.len() == EVENTS && o.published.iter().all(|id| got.contains_key(id))
    };
    let outcome = faults::drive(&mut sim, &net, plan, WINDOW, SETTLE, settled);
    let o = shared.borrow();
    let got = received.lock().expect("not poisoned").clone();
    let check = || {
        outcome?;
        if let Some(id) = got.keys().find(|id| !o.published.contains(*id)) {
            return Err(format!("{id} was pushed but never published"));
        }
        match dead_letters(&bus)? {
            0 => Ok(()),
            n => Err(format!("{n} events dead-lettered")),
        }
    };
    check().map_err(|why| {
        format!(
            "{why}\n  acknowledged {} publishes, group declared {}; received {} ids\n  faults: {described}",
            o.published.len(),
            o.group_declared,
            got.len()
        )
    })
}
