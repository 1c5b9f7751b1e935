//! The saga orchestrator of the control plane: definitions loaded from the files `[sagas]`
//! names, run on the control plane's own event store and bus, with the in-process registry as
//! the discovery source of HTTP steps. Each instance that ends is announced on the bus as
//! `saga.<name>.<completed|compensated|stuck>` and counted on `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use flotilla_core::CloudEvent;
use flotilla_discovery::Discovery;
use flotilla_eventstore::EventStore;
use flotilla_saga::{Orchestrator, SagaDefinition, SagaObserver, SagaState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::platform::{SagaLeaseConfig, SagasConfig};

/// Every definition the patterns name, each with the file it came from. Fails on a pattern
/// that matches nothing and on a file that does not parse or validate, naming the file and
/// the field.
pub(crate) fn load(config: &SagasConfig) -> anyhow::Result<Vec<(PathBuf, SagaDefinition)>> {
    let mut defs = Vec::new();
    for pattern in &config.definitions {
        let paths = glob::glob(pattern)
            .with_context(|| format!("sagas.definitions: invalid pattern {pattern:?}"))?;
        let mut matched = false;
        for path in paths {
            let path =
                path.with_context(|| format!("sagas.definitions: cannot read {pattern:?}"))?;
            matched = true;
            let def = read(&path).with_context(|| {
                format!(
                    "sagas.definitions: invalid saga definition file {}",
                    path.display()
                )
            })?;
            defs.push((path, def));
        }
        if !matched {
            bail!("sagas.definitions: {pattern:?} matches no file");
        }
    }
    Ok(defs)
}

fn read(path: &Path) -> anyhow::Result<SagaDefinition> {
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    let def = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => SagaDefinition::from_toml(&text)?,
        Some("json") => SagaDefinition::from_json(&text)?,
        _ => bail!("the file name must end in .toml or .json"),
    };
    Ok(def)
}

/// The orchestrator on `store`, with `bus` for bus steps and announcements and `discovery`
/// for HTTP steps, having resumed every unfinished instance in the store; the definition
/// files are read again every [`RELOAD_EVERY`] from then on.
pub(crate) async fn start(
    config: &SagasConfig,
    store: Arc<dyn EventStore>,
    bus: flotilla_bus::Bus,
    discovery: Arc<dyn Discovery>,
    metrics: &flotilla::metrics::Metrics,
    lease: Option<&SagaLeaseConfig>,
) -> anyhow::Result<Orchestrator> {
    let defs = load(config)?;
    let mut counters = None;
    metrics.register(|r| counters = Some(SagaMetrics::register(r)));
    let orchestrator = build(
        defs,
        store,
        bus,
        discovery,
        counters.unwrap_or_default(),
        lease,
    )?;
    let recovery = orchestrator
        .recover()
        .await
        .context("cannot resume the unfinished sagas")?;
    tracing::info!(
        resumed = recovery.resumed.len(),
        skipped = recovery.skipped.len(),
        "sagas recovered"
    );
    tokio::spawn(reload(config.clone(), orchestrator.clone()));
    Ok(orchestrator)
}

/// How often the definition files are read again.
pub(crate) const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Registers the definitions the files gain while the control plane runs: a new saga, or a
/// new version of one (new instances use it; running ones finish on theirs). A file that does
/// not parse, or that changes a version already registered, is logged and left out, and the
/// definitions already registered keep running; the log repeats only when the problem changes.
async fn reload(config: SagasConfig, orchestrator: Orchestrator) {
    let mut last_problem = String::new();
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let problem = match reload_once(&config, &orchestrator) {
            Ok(()) => String::new(),
            Err(e) => format!("{e:#}"),
        };
        if !problem.is_empty() && problem != last_problem {
            tracing::warn!(error = %problem, "saga definitions not reloaded");
        }
        last_problem = problem;
    }
}

fn reload_once(config: &SagasConfig, orchestrator: &Orchestrator) -> anyhow::Result<()> {
    let known: std::collections::HashSet<_> = orchestrator
        .definitions()
        .iter()
        .map(|d| (d.name.clone(), d.version))
        .collect();
    let mut refused = Vec::new();
    for (path, def) in load(config)? {
        let (name, version) = (def.name.clone(), def.version);
        match orchestrator.register(def) {
            Ok(()) if !known.contains(&(name.clone(), version)) => {
                tracing::info!(saga = %name, version, file = %path.display(), "saga definition registered");
            }
            Ok(()) => {}
            Err(e) => refused.push(format!("{}: {e}", path.display())),
        }
    }
    if !refused.is_empty() {
        bail!("sagas.definitions: {}", refused.join("; "));
    }
    Ok(())
}

/// Definitions are registered one by one so a refusal names its file.
pub(crate) fn build(
    defs: Vec<(PathBuf, SagaDefinition)>,
    store: Arc<dyn EventStore>,
    bus: flotilla_bus::Bus,
    discovery: Arc<dyn Discovery>,
    metrics: SagaMetrics,
    lease: Option<&SagaLeaseConfig>,
) -> anyhow::Result<Orchestrator> {
    let announcer = Announcer {
        bus: bus.clone(),
        metrics,
    };
    let mut builder = Orchestrator::builder(store)
        .discovery(discovery)
        .bus(bus)
        .observer(Arc::new(announcer));
    if let Some(lease) = lease {
        builder = builder.lease(lease.owner.clone(), lease.ttl);
    }
    let orchestrator = builder
        .build()
        .context("sagas.lease: cannot build the saga orchestrator")?;
    for (path, def) in defs {
        orchestrator.register(def).with_context(|| {
            format!(
                "sagas.definitions: invalid saga definition file {}",
                path.display()
            )
        })?;
    }
    Ok(orchestrator)
}

/// Counters of `/metrics`: `flotilla_sagas_started_total`, `flotilla_sagas_ended_total`
/// by `outcome`, and `flotilla_sagas_in_flight` (started or resumed here and not yet ended).
#[derive(Debug, Clone, Default)]
pub(crate) struct SagaMetrics {
    started: Counter,
    ended: Family<Vec<(String, String)>, Counter>,
    in_flight: Gauge,
}

impl SagaMetrics {
    fn register(r: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        let r = r.sub_registry_with_prefix("flotilla_sagas");
        r.register("started", "Saga instances started", m.started.clone());
        r.register("ended", "Saga instances ended, by outcome", m.ended.clone());
        r.register(
            "in_flight",
            "Saga instances being driven",
            m.in_flight.clone(),
        );
        m
    }
}

/// Publishes each end on the bus and keeps the counters.
#[derive(Debug)]
struct Announcer {
    bus: flotilla_bus::Bus,
    metrics: SagaMetrics,
}

impl SagaObserver for Announcer {
    fn started(&self, _state: &SagaState) {
        self.metrics.started.inc();
        self.metrics.in_flight.inc();
    }

    fn resumed(&self, _state: &SagaState) {
        self.metrics.in_flight.inc();
    }

    fn ended(&self, state: &SagaState) {
        let outcome = state.status.label();
        let labels = vec![("outcome".to_owned(), outcome.to_owned())];
        self.metrics.ended.get_or_create(&labels).inc();
        self.metrics.in_flight.dec();
        let event = CloudEvent::new(
            "/flotilla/sagas",
            format!("saga.{}.{outcome}", state.definition),
        )
        .with_correlation_id(state.id.clone())
        .with_json(serde_json::json!({
            "id": state.id,
            "saga": state.definition,
            "version": state.version,
            "status": state.status,
            "finished_at": state.finished_at,
        }));
        let bus = self.bus.clone();
        // Observers must not block the driver; a lost announcement is logged, the instance's
        // stream still has the end.
        tokio::spawn(async move {
            if let Err(e) = bus.publish(event).await {
                tracing::warn!(error = %e, "cannot announce a saga's end on the bus");
            }
        });
    }
}
