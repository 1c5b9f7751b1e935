//! The saga scenario: the real orchestrator keeps its sagas in the platform event store and
//! sends its bus-command steps through the platform bus, both over the network to a control
//! plane; a participant service consumes the commands through the platform bus, applies
//! each idempotency key once and replies. The network, the control plane, the orchestrator
//! and the participant fail.
//!
//! Invariant once every fault is healed: every saga started ends (completed, compensated or
//! stuck), as read from the store.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flotilla_bus::{Bus, MemoryBackend, Received};
use flotilla_core::CloudEvent;
use flotilla_core::clock::Clock;
use flotilla_core::event::ExtensionValue;
use flotilla_eventstore::MemoryEventStore;
use flotilla_platform::bus::PlatformBus;
use flotilla_platform::eventstore::PlatformEventStore;
use flotilla_saga::action::EXT_IDEMPOTENCY_KEY;
use flotilla_saga::{Orchestrator, SagaDefinition};
use serde_json::json;

use crate::faults::{self, Topology};
use crate::platform::{control_host, plane, until_done};

const CONTROL: &str = "control";
const ORCHESTRATOR: &str = "orchestrator";
const PARTICIPANT: &str = "participant";
const SAGAS: usize = 6;
const WINDOW: Duration = Duration::from_secs(30);
/// Room for the steps' timeouts and retries after the heal, and for leases that outlast a
/// crash of the control plane (see the platform scenario).
const SETTLE: Duration = Duration::from_secs(120);

const SAGA: &str = r#"
name = "reserve-twice"
version = 1

[[steps]]
name = "reserve"
timeout = "2s"
retry = { max_attempts = 5 }
[steps.action.bus]
topic = "stock.reserve"
reply_topic = "saga.replies"
[steps.compensation.bus]
topic = "stock.release"
reply_topic = "saga.replies"

[[steps]]
name = "confirm"
timeout = "2s"
retry = { max_attempts = 5 }
[steps.action.bus]
topic = "stock.confirm"
reply_topic = "saga.replies"
"#;

/// The status each saga ended with, by id, as the orchestrator host last read it.
type Ended = Rc<RefCell<BTreeMap<String, String>>>;
/// The participant's answers by idempotency key: kept across its restarts, as a service's
/// inbox table would be.
type Answers = Arc<Mutex<HashMap<String, CloudEvent>>>;

fn reply(r: &Received, key: &str) -> CloudEvent {
    let mut reply = CloudEvent::new("/participant", "saga.reply")
        .with_correlation_id(r.event.correlation_id().unwrap_or_default());
    reply
        .set_extension(EXT_IDEMPOTENCY_KEY, ExtensionValue::String(key.into()))
        .expect("a valid extension");
    reply.with_json(json!({ "ok": true }))
}

fn participant_host(sim: &mut turmoil::Sim<'_>, answers: &Answers) {
    let answers = Arc::clone(answers);
    sim.host(PARTICIPANT, move || {
        let answers = Arc::clone(&answers);
        async move {
            let bus = Bus::new(Arc::new(PlatformBus::new(plane(CONTROL))));
            let publisher = bus.clone();
            let handle = move |r: Received| {
                let (bus, answers) = (publisher.clone(), Arc::clone(&answers));
                async move {
                    let Some(key) = r.event.extension_str(EXT_IDEMPOTENCY_KEY) else {
                        return Ok(());
                    };
                    let answer = answers
                        .lock()
                        .expect("not poisoned")
                        .entry(key.to_owned())
                        .or_insert_with(|| reply(&r, key))
                        .clone();
                    bus.publish_to("saga.replies".parse()?, answer).await?;
                    Ok(())
                }
            };
            let subscribe = || {
                bus.subscribe("stock.>")
                    .group("participant")
                    .handler(handle.clone())
            };
            let _subscription = until_done("subscribe", subscribe).await?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// Waits until saga `id` ends, asking again while the store cannot be read.
async fn await_end(orchestrator: &Orchestrator, id: &str) -> String {
    loop {
        if let Ok(state) = orchestrator.wait(id).await
            && state.status.is_terminal()
        {
            return state.status.label().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Wall-clock time that moves with the simulation's time, for the orchestrator: its step
/// timeouts, retry times and deadlines are wall-clock instants it waits for with tokio's
/// (simulated) timers. With the real clock, simulated minutes pass in real milliseconds and
/// no recorded deadline would ever come within the settle window. One origin for the whole
/// run, so a restarted host's clock goes on from where the simulation is.
#[derive(Debug)]
struct SimClock {
    origin: SystemTime,
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        self.origin + turmoil::sim_elapsed().unwrap_or_default()
    }
}

fn orchestrator_host(sim: &mut turmoil::Sim<'_>, ended: &Ended) {
    let ended = Rc::clone(ended);
    let clock = Arc::new(SimClock {
        origin: SystemTime::now(),
    });
    sim.host(ORCHESTRATOR, move || {
        let ended = Rc::clone(&ended);
        let clock = Arc::clone(&clock);
        async move {
            let store = PlatformEventStore::connect(plane(CONTROL)).await?;
            let bus = Bus::new(Arc::new(PlatformBus::new(plane(CONTROL))));
            let orchestrator = Orchestrator::builder(Arc::new(store))
                .clock(clock)
                .bus(bus)
                .saga(SagaDefinition::from_toml(SAGA)?)
                .build()?;
            until_done("recover", || orchestrator.recover()).await?;
            for n in 0..SAGAS {
                let id = format!("saga-{n}");
                let start = || orchestrator.start_with_id("reserve-twice", &id, json!({ "n": n }));
                until_done("start", start).await?;
                ended
                    .borrow_mut()
                    .entry(id)
                    .or_insert_with(|| "running".into());
            }
            for n in 0..SAGAS {
                let id = format!("saga-{n}");
                let status = await_end(&orchestrator, &id).await;
                ended.borrow_mut().insert(id, status);
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// One seed of the scenario.
pub(crate) fn run(seed: u64) -> Result<(), String> {
    let mut rng = faults::rng(seed);
    let mut sim = faults::builder(seed, &mut rng).build();
    let (bus, store) = (
        Arc::new(MemoryBackend::new()),
        Arc::new(MemoryEventStore::new()),
    );
    let ended: Ended = Rc::default();
    let answers: Answers = Arc::default();
    control_host(&mut sim, bus, store);
    participant_host(&mut sim, &answers);
    orchestrator_host(&mut sim, &ended);
    let net = Topology {
        server: CONTROL,
        clients: vec![ORCHESTRATOR, PARTICIPANT],
        restartable: vec![ORCHESTRATOR, PARTICIPANT],
    };
    let plan = faults::schedule(&mut rng, &net, WINDOW);
    let described = format!("{plan:?}");
    let settled = || {
        let e = ended.borrow();
        e.len() == SAGAS && e.values().all(|s| s != "running" && s != "compensating")
    };
    faults::drive(&mut sim, &net, plan, WINDOW, SETTLE, settled).map_err(|why| {
        format!(
            "{why}\n  sagas: {:?}\n  faults: {described}",
            ended.borrow()
        )
    })?;
    Ok(())
}
