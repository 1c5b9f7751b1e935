//! Resuming after a restart: every saga stream whose last event is not terminal gets a driver
//! again. Timers need no re-arming of their own: deadlines, timeouts and retry times are in
//! the stream, and the driver's first decision waits for (or fires) them.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_eventstore::{Filter, ReadAll};

use super::{Orchestrator, stream};
use crate::event::SagaEvent;
use crate::{Error, Result};

/// What [`Orchestrator::recover`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Instances now driven by this orchestrator.
    pub resumed: Vec<String>,
    /// Instances left alone, with why (their definition version is not registered here, or
    /// their stream could not be read).
    pub skipped: Vec<(String, Error)>,
}

const PAGE: usize = 1000;

/// What a scan of the `saga` category knows of one instance.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) definition: String,
    pub(super) ended: bool,
}

impl Orchestrator {
    /// Resumes every unfinished instance in the store. Instances already driven here are
    /// left as they are. It scans the `saga` category of `$all`, so it reads every saga event
    /// once; call it at start-up, not on a hot path. It sees what the store's `$all` shows up
    /// to its head: on a store shared with other processes, an instance started elsewhere a
    /// moment ago may not be visible yet, so a standby replica calls it periodically.
    ///
    /// With a [lease](super::OrchestratorBuilder::lease) it renews the lease, resumes only
    /// this orchestrator's instances and those whose owner's lease has run out (claiming
    /// them), and starts the task that does so again every third of the lease's time to live;
    /// instances it could not take are logged, not reported.
    pub async fn recover(&self) -> Result<Recovery> {
        if let Some(lease) = &self.shared.lease {
            let resumed = self.keep(lease).await?;
            self.start_keeper(lease);
            return Ok(Recovery {
                resumed,
                skipped: Vec::new(),
            });
        }
        let mut report = Recovery::default();
        for id in self.unfinished().await? {
            match self.resume(&id).await {
                Ok(()) => report.resumed.push(id),
                Err(e) => {
                    tracing::warn!(saga = %id, error = %e, "saga not resumed");
                    report.skipped.push((id, e));
                }
            }
        }
        Ok(report)
    }

    async fn unfinished(&self) -> Result<BTreeSet<String>> {
        let index = self.index().await?;
        Ok(index
            .into_iter()
            .filter(|(_, seen)| !seen.ended)
            .map(|(id, _)| id)
            .collect())
    }

    /// Every instance in the store with its definition name and whether its last event ends
    /// it (a `SagaRetried` after `SagaStuck` opens it again).
    pub(super) async fn index(&self) -> Result<BTreeMap<String, Seen>> {
        let mut index: BTreeMap<String, Seen> = BTreeMap::new();
        let mut after = 0;
        loop {
            let read =
                ReadAll::after(after, PAGE).filtered(Filter::Category(stream::CATEGORY.into()));
            let page = self.shared.store.read_all(read).await?;
            for e in &page {
                let Some(id) = stream::id_of(&e.stream) else {
                    continue;
                };
                let seen = index.entry(id.to_owned()).or_default();
                match SagaEvent::from_recorded(e) {
                    Ok(SagaEvent::Started { definition, .. }) => seen.definition = definition,
                    Ok(ev) => seen.ended = ev.is_terminal(),
                    Err(_) => {}
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.position,
                _ => break,
            }
        }
        Ok(index)
    }

    async fn resume(&self, id: &str) -> Result<()> {
        let state = stream::load_durably(self.shared.store.as_ref(), id).await?;
        if state.status.is_terminal() {
            return Ok(());
        }
        let def = self.definition(&state.definition, Some(state.version))?;
        self.observe_resumed(&state);
        self.drive(state, def);
        Ok(())
    }
}
