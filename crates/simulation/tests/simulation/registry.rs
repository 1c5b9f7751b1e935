//! The registry scenario: two services register themselves through the real agent and a
//! third follows them through the real registry client, against the real registry serving
//! its HTTP API, while the network and the registry fail.
//!
//! Invariants once every fault is healed: each agent's instance is registered (passing) in
//! the registry, each agent says so, and the follower's cached set equals the registry's
//! final set for the service (same instances, same statuses).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{ServiceInstance, ServiceName};
use flotilla_discovery::catalog::{CatalogStore, MemoryCatalogStore};
use flotilla_discovery::{Discovery, HealthStatus, Query, ServiceSet};
use flotilla_registry::Registry;
use flotilla_registry_client::{Agent, Check, ClientOptions, Registration, RegistryClient};
use rand::Rng as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::faults::{self, Topology};
use crate::net;

const REGISTRY: &str = "registry";
const SERVICES: [&str; 2] = ["svc-a", "svc-b"];
const FOLLOWER: &str = "follower";
/// Faults happen in the first 30 simulated seconds.
const WINDOW: Duration = Duration::from_secs(30);
/// Once healed, everything must agree within this much simulated time: a few rounds of the
/// clients' longest backoff (2 s), TTL (3 s) and blocking wait (2 s) plus their timeouts.
const SETTLE: Duration = Duration::from_secs(30);

fn users() -> ServiceName {
    ServiceName::new("users").expect("a valid name")
}

fn client_options() -> ClientOptions {
    let mut o = ClientOptions::new(net::url(REGISTRY));
    o.wait = Duration::from_secs(2);
    o.timeout = Duration::from_secs(1);
    o.min_backoff = Duration::from_millis(100);
    o.max_backoff = Duration::from_secs(2);
    o
}

/// What the checks read from inside the simulation.
#[derive(Default)]
struct Observed {
    registry: Option<Registry>,
    agents: Vec<(String, watch::Receiver<bool>)>,
    follower: Option<watch::Receiver<ServiceSet>>,
}

type Shared = Rc<RefCell<Observed>>;

/// The registry host: a registry over `durable` when the seed keeps its catalog across
/// restarts, over a new empty store each start otherwise (a registry that lost its disk).
fn registry_host(sim: &mut turmoil::Sim<'_>, shared: &Shared, keeps_catalog: bool) {
    let durable = Arc::new(MemoryCatalogStore::new());
    let shared = Rc::clone(shared);
    sim.host(REGISTRY, move || {
        let store: Arc<dyn CatalogStore> = if keeps_catalog {
            durable.clone()
        } else {
            Arc::new(MemoryCatalogStore::new())
        };
        let shared = Rc::clone(&shared);
        async move {
            let registry = Registry::new(Default::default(), store).await?;
            shared.borrow_mut().registry = Some(registry.clone());
            let checks = registry.clone();
            // Never cancelled: a crash drops the host's tasks.
            tokio::task::spawn_local(async move { checks.run(CancellationToken::new()).await });
            net::serve(registry.router()).await?;
            Ok(())
        }
    });
}

fn service_host(sim: &mut turmoil::Sim<'_>, shared: &Shared, host: &'static str, index: usize) {
    let shared = Rc::clone(shared);
    sim.host(host, move || {
        let shared = Rc::clone(&shared);
        async move {
            let client = RegistryClient::with_dialer(client_options(), net::registry_dialer())?;
            let mut instance = ServiceInstance::new(users(), host, 8080);
            instance.id = host.to_owned();
            let check = Check::Ttl {
                ttl: Duration::from_secs(3),
                deregister_after: Some(Duration::from_secs(6)),
            };
            let agent = Agent::start(client, Registration::new(instance, check));
            shared.borrow_mut().agents[index] = (host.to_owned(), agent.registered());
            std::future::pending::<()>().await;
            drop(agent);
            Ok(())
        }
    });
}

fn follower_host(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    let shared = Rc::clone(shared);
    sim.host(FOLLOWER, move || {
        let shared = Rc::clone(&shared);
        async move {
            let client = RegistryClient::with_dialer(client_options(), net::registry_dialer())?;
            shared.borrow_mut().follower = Some(client.watch(&users()));
            std::future::pending::<()>().await;
            drop(client);
            Ok(())
        }
    });
}

/// The instances and statuses the registry holds for the service now.
fn registry_view(registry: &Registry) -> Vec<(String, HealthStatus)> {
    let mut every = Query::default();
    every.status = vec![
        HealthStatus::Passing,
        HealthStatus::Warning,
        HealthStatus::Critical,
        HealthStatus::Draining,
    ];
    let every = every.validated().expect("a valid query");
    let (_, records) = registry.instances(&users(), &every);
    let mut view: Vec<_> = records
        .into_iter()
        .map(|r| (r.instance.id, r.status))
        .collect();
    view.sort_by(|a, b| a.0.cmp(&b.0));
    view
}

fn follower_view(set: &ServiceSet) -> Vec<(String, HealthStatus)> {
    let mut view: Vec<_> = set
        .endpoints
        .iter()
        .map(|e| (e.instance.id.clone(), e.status))
        .collect();
    view.sort_by(|a, b| a.0.cmp(&b.0));
    view
}

/// Every invariant of the scenario, or what breaks one.
fn check(observed: &Observed) -> Result<(), String> {
    let registry = observed
        .registry
        .as_ref()
        .ok_or("the registry never started")?;
    let view = registry_view(registry);
    for (id, registered) in &observed.agents {
        if !view.contains(&(id.clone(), HealthStatus::Passing)) {
            return Err(format!(
                "{id} is not registered and passing: registry has {view:?}"
            ));
        }
        if !*registered.borrow() {
            return Err(format!("the agent of {id} says it is not registered"));
        }
    }
    let follower = observed
        .follower
        .as_ref()
        .ok_or("the follower never started")?;
    let seen = follower_view(&follower.borrow());
    if seen != view {
        return Err(format!("the follower has {seen:?}, the registry {view:?}"));
    }
    Ok(())
}

/// One seed of the scenario.
pub(crate) fn run(seed: u64) -> Result<(), String> {
    let mut rng = faults::rng(seed);
    let mut sim = faults::builder(seed, &mut rng).build();
    let shared: Shared = Rc::default();
    let (idle_a, idle_b) = (watch::channel(false).1, watch::channel(false).1);
    shared.borrow_mut().agents = vec![(SERVICES[0].into(), idle_a), (SERVICES[1].into(), idle_b)];
    registry_host(&mut sim, &shared, rng.random_bool(0.5));
    for (i, host) in SERVICES.into_iter().enumerate() {
        service_host(&mut sim, &shared, host, i);
    }
    follower_host(&mut sim, &shared);
    let net = Topology {
        server: REGISTRY,
        clients: vec![SERVICES[0], SERVICES[1], FOLLOWER],
        restartable: vec![SERVICES[0], SERVICES[1], FOLLOWER],
    };
    let plan = faults::schedule(&mut rng, &net, WINDOW);
    let described = format!("{plan:?}");
    faults::drive(&mut sim, &net, plan, WINDOW, SETTLE, || {
        check(&shared.borrow()).is_ok()
    })
    .map_err(|why| {
        let last = check(&shared.borrow()).err().unwrap_or_default();
        format!("{why}: {last}\n  faults: {described}")
    })?;
    Ok(())
}
