//! How far a migration got, kept in a file next to the source database so an interrupted run
//! continues where it stopped. Every step it records is also safe to redo (appends are
//! idempotent by event id, declarations and puts are idempotent), so the file only saves
//! work: losing its last write never duplicates anything in the event store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The file's name inside the source data directory.
pub(super) const FILE: &str = "migrate-progress.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Progress {
    /// The target this progress is about: a run against another target starts afresh.
    pub(super) target: String,
    pub(super) events: EventsProgress,
    pub(super) catalog_done: bool,
    pub(super) bus: BusProgress,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct EventsProgress {
    /// Source position of the last event copied (0: none yet).
    pub(super) source_position: u64,
    /// Target position of that event.
    pub(super) target_position: u64,
    /// Source checkpoint positions already mapped to the target position of the last event
    /// at or below them.
    pub(super) checkpoints: BTreeMap<u64, u64>,
    /// Every event is copied (snapshots, checkpoints and deletions are redone each run).
    pub(super) done: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct BusProgress {
    /// Groups whose dead letters are in the target's DLQ.
    pub(super) dlq_done: BTreeSet<String>,
    /// Publish sequence of the last undelivered event published to the target.
    pub(super) published_through: i64,
    /// Groups whose already-consumed copies were acked away on the target.
    pub(super) settled: BTreeSet<String>,
    pub(super) done: bool,
}

impl Progress {
    /// The progress recorded in `dir` for `target`, or a fresh one.
    pub(super) fn load(dir: &Path, target: &str) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        let mut progress = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Self>(&bytes).with_context(|| {
                format!("cannot read {} (delete it to start over)", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if progress.target != target {
            progress = Self {
                target: target.to_owned(),
                ..Self::default()
            };
        }
        progress.path = path;
        Ok(progress)
    }

    /// Whether a run against this target had started before.
    pub(super) fn resumed(&self) -> bool {
        self.events.source_position > 0 || self.catalog_done || self.bus.published_through > 0
    }

    /// Whether every part was copied (a run then only verifies, after redoing the idempotent
    /// last steps).
    pub(super) fn complete(&self) -> bool {
        self.events.done && self.bus.done
    }

    /// Writes the file durably: a temporary file, fsynced, renamed over the old one, and the
    /// directory fsynced so the rename survives a power loss.
    pub(super) fn save(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().with_context(|| format!("cannot record progress in {}", self.path.display()))
    }
}
