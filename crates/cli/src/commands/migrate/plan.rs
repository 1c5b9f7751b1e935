//! What the source holds, read once before anything is copied: the dry run prints it, the copy
//! steps work from it and the verification compares against it.

use std::collections::HashMap;

use anyhow::Context as _;
use flotilla_bus::{Backend as _, DeadLetter, DlqQuery, GroupInfo};
use flotilla_core::StreamId;
use flotilla_discovery::catalog::StoredCatalog;
use flotilla_eventstore::{Position, ReadAll, StreamInfo, Version};
use flotilla_sqlite::bus::PendingDelivery;

use super::engines::Source;

/// Events read from `$all` per call.
pub(super) const PAGE: usize = 1000;

#[derive(Debug)]
pub(super) struct Plan {
    pub(super) streams: Vec<StreamInfo>,
    /// Events in `$all` (those of deleted streams not yet truncated included).
    pub(super) events: u64,
    /// Streams whose first events were truncated away: (stream, first version left).
    pub(super) truncated: Vec<(StreamId, Version)>,
    pub(super) snapshots: usize,
    pub(super) checkpoints: Vec<(String, Position)>,
    pub(super) groups: Vec<GroupInfo>,
    /// Every group's undelivered events, in publish order.
    pub(super) pending: Vec<PendingDelivery>,
    pub(super) dead_letters: Vec<DeadLetter>,
    pub(super) catalog: StoredCatalog,
}

impl Plan {
    pub(super) async fn read(source: &Source) -> anyhow::Result<Self> {
        let streams = list(&*source.events).await?;
        let (events, first) = scan_all(source).await?;
        let mut truncated: Vec<_> = first.into_iter().filter(|(_, v)| *v > 1).collect();
        truncated.sort();
        let mut snapshots = 0;
        for info in streams.iter().filter(|s| !s.deleted) {
            snapshots += usize::from(source.events.load_snapshot(&info.stream).await?.is_some());
        }
        Ok(Self {
            streams,
            events,
            truncated,
            snapshots,
            checkpoints: source.events.list_checkpoints().await?,
            groups: source.bus.groups().await?,
            pending: source.bus.pending_deliveries().await?,
            dead_letters: dead_letters(source).await?,
            catalog: source
                .catalog
                .load()
                .await
                .context("cannot load the catalog")?,
        })
    }

    /// Distinct undelivered events (one event pending for two groups counts once).
    pub(super) fn pending_events(&self) -> usize {
        let mut seqs: Vec<i64> = self.pending.iter().map(|p| p.seq).collect();
        seqs.dedup();
        seqs.len()
    }

    /// The dry run's report.
    pub(super) fn describe(&self, catalog_in_place: bool) -> String {
        let deleted = self.streams.iter().filter(|s| s.deleted).count();
        let catalog = match catalog_in_place {
            true => "kept in place (the target's data_dir is the source's)".to_owned(),
            false => format!(
                "{} entries, index {}",
                self.catalog.entries.len(),
                self.catalog.index
            ),
        };
        format!(
            "event store: {} events in {} streams ({deleted} deleted), {} snapshots, {} checkpoints\n\
             registry catalog: {catalog}\n\
             bus: {} groups, {} undelivered events ({} deliveries owed), {} dead letters",
            self.events,
            self.streams.len(),
            self.snapshots,
            self.checkpoints.len(),
            self.groups.len(),
            self.pending_events(),
            self.pending.len(),
            self.dead_letters.len(),
        )
    }
}

/// Every stream of `store`, in id order.
pub(super) async fn list(
    store: &dyn flotilla_eventstore::EventStore,
) -> anyhow::Result<Vec<StreamInfo>> {
    let mut out: Vec<StreamInfo> = Vec::new();
    loop {
        let after = out.last().map(|s| s.stream.clone());
        let page = store.list_streams(after.as_ref(), PAGE).await?;
        let full = page.len() == PAGE;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// Counts `$all` and notes each stream's first version still stored.
async fn scan_all(source: &Source) -> anyhow::Result<(u64, HashMap<StreamId, Version>)> {
    let (mut after, mut count, mut first) = (0, 0, HashMap::new());
    loop {
        let page = source.events.read_all(ReadAll::after(after, PAGE)).await?;
        let Some(last) = page.last() else {
            return Ok((count, first));
        };
        after = last.position;
        count += page.len() as u64;
        for e in page {
            first.entry(e.stream).or_insert(e.version);
        }
    }
}

async fn dead_letters(source: &Source) -> anyhow::Result<Vec<DeadLetter>> {
    let mut out: Vec<DeadLetter> = Vec::new();
    loop {
        let query = DlqQuery {
            group: None,
            after: out.last().map(|d| d.id.clone()),
            limit: PAGE,
        };
        let page = source.bus.dlq_list(&query).await?;
        let full = page.len() == PAGE;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}
