//! Leases: which of several orchestrators sharing one store drives an instance.
//!
//! An orchestrator built with a lease name keeps a lease: an event in its own stream
//! `sagalease-<owner>` saying until when it is alive, renewed every third of the lease's time
//! to live. An instance is driven by the orchestrator its last `SagaClaimed` names (the one
//! that opened it, or the last to take it over). On every tick an orchestrator reads the saga
//! events appended since its previous tick and claims each unfinished instance whose owner's
//! lease has run out, appending `SagaClaimed` with the expected version (of two claimers,
//! exactly one wins), then drives it.
//!
//! The lease only decides who drives; the expected version still guarantees that at most one
//! writer records each transition. An owner that is alive but lost its lease (paused, cut off
//! from the store) finds the claim at its next append and stops driving the instance; the
//! step it was running may then run twice, under the same idempotency key.
//!
//! An instance is taken over at most `ttl + ttl / 3` (plus one claim's write) after its
//! owner's last renewal: the lease runs out after `ttl`, and every survivor looks every
//! `ttl / 3`. Lease expiry compares wall clocks, so hosts sharing a store need synchronised
//! clocks (skew adds to that bound, or takes over early).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flotilla_core::StreamId;
use flotilla_eventstore::{
    EventStore, ExpectedVersion, Filter, NewEvent, Position, ReadAll, ReadStream,
};
use serde_json::json;

use super::{Orchestrator, stream};
use crate::event::SagaEvent;
use crate::state::after;
use crate::{Error, Result};

/// Every lease stream is in this category (`sagalease-<owner>`).
const CATEGORY: &str = "sagalease";

/// A lease stream keeps at most this many renewals before older ones are truncated.
const KEEP: u64 = 16;

const PAGE: usize = 1000;

/// This orchestrator's lease, and what its keeper knows of the store's instances.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) owner: String,
    pub(super) ttl: Duration,
    stream: StreamId,
    keeper_started: AtomicBool,
    scan: tokio::sync::Mutex<Scan>,
}

/// The unfinished instances seen so far, with their owners, and where reading stopped.
#[derive(Debug, Default)]
struct Scan {
    after: Position,
    unfinished: BTreeMap<String, Option<String>>,
}

impl Lease {
    pub(super) fn new(owner: String, ttl: Duration) -> Result<Self> {
        let stream = StreamId::new(format!("{CATEGORY}-{owner}")).map_err(|e| {
            Error::input(
                "lease owner",
                format!("{owner:?} cannot name a stream: {e}"),
            )
        })?;
        if ttl < Duration::from_millis(30) {
            return Err(Error::input("lease ttl", "must be at least 30 ms"));
        }
        Ok(Self {
            owner,
            ttl,
            stream,
            keeper_started: AtomicBool::new(false),
            scan: tokio::sync::Mutex::default(),
        })
    }

    fn tick(&self) -> Duration {
        self.ttl / 3
    }

    /// Says this orchestrator is alive until `now + ttl`.
    async fn renew(&self, store: &dyn EventStore, now: DateTime<Utc>) -> Result<()> {
        let until = after(now, self.ttl);
        let event = NewEvent::new("LeaseRenewed", json!({ "until": until }));
        let r =
            stream::append_durably(store, &self.stream, ExpectedVersion::Any, vec![event]).await?;
        if r.last_version.is_multiple_of(KEEP) {
            store.truncate_stream(&self.stream, r.last_version).await?;
        }
        Ok(())
    }
}

/// Whether `owner`'s lease still runs at `now`.
async fn alive(store: &dyn EventStore, owner: &str, now: DateTime<Utc>) -> Result<bool> {
    let Ok(stream) = StreamId::new(format!("{CATEGORY}-{owner}")) else {
        return Ok(false);
    };
    let last = store.read_stream(&stream, ReadStream::backward(1)).await?;
    let until = last
        .first()
        .and_then(|e| e.data.get("until").cloned())
        .and_then(|u| serde_json::from_value::<DateTime<Utc>>(u).ok());
    Ok(until.is_some_and(|u| u > now))
}

/// Whether each owner's lease runs, asked once per tick.
struct Owners<'a> {
    store: &'a dyn EventStore,
    now: DateTime<Utc>,
    known: HashMap<String, bool>,
}

impl Owners<'_> {
    async fn alive(&mut self, owner: &str) -> Result<bool> {
        if let Some(live) = self.known.get(owner) {
            return Ok(*live);
        }
        let live = alive(self.store, owner, self.now).await?;
        self.known.insert(owner.to_owned(), live);
        Ok(live)
    }
}

impl Orchestrator {
    /// Renews the lease, then drives every unfinished instance that is this orchestrator's
    /// or whose owner's lease has run out; answers the instances it now drives.
    pub(super) async fn keep(&self, lease: &Lease) -> Result<Vec<String>> {
        lease
            .renew(self.shared.store.as_ref(), self.shared.now())
            .await?;
        self.take_over(lease).await
    }

    /// Drives every unfinished instance that is this orchestrator's or whose owner's lease
    /// has run out; answers the instances it now drives.
    async fn take_over(&self, lease: &Lease) -> Result<Vec<String>> {
        let store = self.shared.store.as_ref();
        let mut scan = lease.scan.lock().await;
        scan.read(store).await?;
        let mut owners = Owners {
            store,
            now: self.shared.now(),
            known: HashMap::new(),
        };
        let candidates: Vec<_> = {
            let running = self.shared.running();
            let idle = |id: &String| !running.contains_key(id);
            scan.unfinished
                .iter()
                .filter(|(id, _)| idle(id))
                .map(|(id, owner)| (id.clone(), owner.clone()))
                .collect()
        };
        let mut driven = Vec::new();
        for (id, seen) in candidates {
            // Another live orchestrator's instance needs no read.
            if let Some(o) = seen.as_deref().filter(|o| *o != lease.owner)
                && owners.alive(o).await?
            {
                continue;
            }
            match self.take(&id, lease, &mut owners).await {
                Ok(Taken::Driven) => driven.push(id),
                Ok(Taken::Ended) => {
                    scan.unfinished.remove(&id);
                }
                Ok(Taken::Owned(owner)) => {
                    scan.unfinished.insert(id, Some(owner));
                }
                Err(e) => tracing::warn!(saga = %id, error = %e, "saga not taken over"),
            }
        }
        Ok(driven)
    }

    /// Drives instance `id` if it is this orchestrator's, claiming it first when its owner's
    /// lease has run out (or it has none).
    async fn take(&self, id: &str, lease: &Lease, owners: &mut Owners<'_>) -> Result<Taken> {
        let mut state = stream::load(self.shared.store.as_ref(), id).await?;
        if state.status.is_terminal() {
            return Ok(Taken::Ended);
        }
        let claim = match state.owner.clone() {
            Some(o) if o == lease.owner => false,
            Some(o) if owners.alive(&o).await? => return Ok(Taken::Owned(o)),
            _ => true,
        };
        let def = self.definition(&state.definition, Some(state.version))?;
        if claim {
            let from = state.owner.clone();
            let event = SagaEvent::Claimed {
                owner: lease.owner.clone(),
                at: self.shared.now(),
            };
            let store = self.shared.store.as_ref();
            if let stream::Appended::Lost = stream::append(store, &mut state, event).await? {
                // Someone else moved first; the next tick looks again.
                return Ok(Taken::Owned(state.owner.unwrap_or_default()));
            }
            tracing::info!(saga = %id, from = ?from, "saga taken over");
        }
        self.observe_resumed(&state);
        self.drive(state, def);
        Ok(Taken::Driven)
    }

    /// Starts, once, the task that renews the lease and the one that takes over orphaned
    /// instances: apart, so a long take-over (many instances to read) never delays a renewal.
    /// They hold the orchestrator weakly, so dropping the last clone still stops everything.
    pub(super) fn start_keeper(&self, lease: &Lease) {
        if lease.keeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let renewer = self.every_tick(lease.tick(), "saga lease not renewed", |orch| async move {
            let Some(lease) = &orch.shared.lease else {
                return Ok(());
            };
            lease
                .renew(orch.shared.store.as_ref(), orch.shared.now())
                .await
        });
        let taker = self.every_tick(lease.tick(), "sagas not taken over", |orch| async move {
            let Some(lease) = &orch.shared.lease else {
                return Ok(());
            };
            orch.take_over(lease).await.map(|_| ())
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.spawn(renewer);
        tasks.spawn(taker);
    }

    /// A loop running `work` every `tick` while the orchestrator lives, logging its failures.
    fn every_tick<F, Fut>(
        &self,
        tick: Duration,
        failed: &'static str,
        work: F,
    ) -> impl Future<Output = ()> + Send + 'static + use<F, Fut>
    where
        F: Fn(Orchestrator) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send,
    {
        let shared = Arc::downgrade(&self.shared);
        let tasks = Arc::downgrade(&self.tasks);
        async move {
            loop {
                tokio::time::sleep(tick).await;
                let (Some(shared), Some(tasks)) = (shared.upgrade(), tasks.upgrade()) else {
                    return;
                };
                if let Err(e) = work(Orchestrator { shared, tasks }).await {
                    tracing::warn!(error = %e, "{failed}");
                }
            }
        }
    }
}

/// What [`Orchestrator::take`] did with an instance.
enum Taken {
    /// It is driven here now.
    Driven,
    /// It has ended.
    Ended,
    /// Another live orchestrator drives it.
    Owned(String),
}

impl Scan {
    /// Folds the saga events appended since the last read into `unfinished`.
    async fn read(&mut self, store: &dyn EventStore) -> Result<()> {
        loop {
            let read = ReadAll::after(self.after, PAGE)
                .filtered(Filter::Category(stream::CATEGORY.into()));
            let page = store.read_all(read).await?;
            for e in &page {
                let Some(id) = stream::id_of(&e.stream) else {
                    continue;
                };
                match SagaEvent::from_recorded(e) {
                    Ok(SagaEvent::Claimed { owner, .. }) => {
                        self.unfinished.insert(id.to_owned(), Some(owner));
                    }
                    Ok(ev) if ev.is_terminal() => {
                        self.unfinished.remove(id);
                    }
                    Ok(SagaEvent::Started { .. } | SagaEvent::Retried { .. }) => {
                        self.unfinished.entry(id.to_owned()).or_insert(None);
                    }
                    _ => {}
                }
            }
            match page.last() {
                Some(last) => self.after = last.position,
                None => return Ok(()),
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }
}
