//! The event store's copy: every event in global order, appended to its stream at its own
//! version with its own id (so a re-run appends nothing twice), then snapshots, deletions and
//! subscriber checkpoints, each checkpoint moved to the target position of the last event at
//! or below it.

use std::sync::Arc;

use anyhow::Context as _;
use flotilla_eventstore::{
    AppendResult, Error, EventStore, ExpectedVersion, NewEvent, Position, ReadAll, RecordedEvent,
};
use indicatif::ProgressBar;

use super::plan::{PAGE, Plan};
use super::progress::Progress;

/// Most events in one append.
const BATCH: usize = 500;
/// Batches appended between two writes of the progress file.
const SAVE_EVERY: usize = 64;

pub(super) async fn copy(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    plan: &Plan,
    progress: &mut Progress,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    if !progress.events.done {
        copy_events(source, target, plan, progress, bar).await?;
    }
    bar.set_message("snapshots, deletions and checkpoints");
    copy_snapshots(source, target, plan).await?;
    for info in plan.streams.iter().filter(|s| s.deleted) {
        target
            .delete_stream(&info.stream, ExpectedVersion::Any)
            .await
            .with_context(|| format!("cannot delete stream {} on the target", info.stream))?;
    }
    for (name, position) in &plan.checkpoints {
        let mapped = mapped_checkpoint(progress, *position);
        target
            .save_checkpoint(name, mapped)
            .await
            .with_context(|| format!("cannot save checkpoint {name:?} on the target"))?;
    }
    Ok(())
}

/// The target position of the last event at or below source position `at`.
pub(super) fn mapped_checkpoint(progress: &Progress, at: Position) -> Position {
    let events = &progress.events;
    match events.checkpoints.get(&at) {
        Some(p) => *p,
        None if at >= events.source_position => events.target_position,
        None => 0,
    }
}

async fn copy_events(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    plan: &Plan,
    progress: &mut Progress,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut checkpoints: Vec<Position> = plan.checkpoints.iter().map(|c| c.1).collect();
    checkpoints.sort_unstable();
    let mut batches = 0;
    bar.set_message("events");
    loop {
        let after = progress.events.source_position;
        let page = source.read_all(ReadAll::after(after, PAGE)).await?;
        if page.is_empty() {
            break;
        }
        for batch in split(page, &checkpoints) {
            map_checkpoints_before(progress, &checkpoints, batch[0].position);
            let n = batch.len() as u64;
            let last = batch.last().map_or(0, |e| e.position);
            let result = append(target, batch).await?;
            progress.events.source_position = last;
            progress.events.target_position = result.last_position;
            bar.inc(n);
            batches += 1;
            if batches % SAVE_EVERY == 0 {
                progress.save()?;
            }
        }
    }
    map_checkpoints_before(progress, &checkpoints, Position::MAX);
    progress.events.done = true;
    progress.save()
}

/// Maps every checkpoint below `next` (the source position about to be copied) that is at or
/// above the last copied one to the target position of that last copied event.
fn map_checkpoints_before(progress: &mut Progress, checkpoints: &[Position], next: Position) {
    let events = &mut progress.events;
    for &at in checkpoints.iter().filter(|&&c| c < next) {
        if at >= events.source_position && !events.checkpoints.contains_key(&at) {
            events.checkpoints.insert(at, events.target_position);
        }
    }
}

/// Cuts a page of `$all` into appends: runs of one stream, at most [`BATCH`] long, never
/// straddling a checkpoint (so each checkpoint falls on a batch's last event).
fn split(page: Vec<RecordedEvent>, checkpoints: &[Position]) -> Vec<Vec<RecordedEvent>> {
    let mut out: Vec<Vec<RecordedEvent>> = Vec::new();
    for e in page {
        let joins = out.last().and_then(|b| b.last()).is_some_and(|prev| {
            let crosses = checkpoints
                .iter()
                .any(|&c| c >= prev.position && c < e.position);
            prev.stream == e.stream && prev.version + 1 == e.version && !crosses
        }) && out.last().is_some_and(|b| b.len() < BATCH);
        match (joins, out.last_mut()) {
            (true, Some(batch)) => batch.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

/// Appends a run of one stream at its source versions. A run the target partly holds already
/// (an earlier run was cut at another place) goes one event at a time: each of those appends
/// is either new or an idempotent repeat.
async fn append(
    target: &Arc<dyn EventStore>,
    batch: Vec<RecordedEvent>,
) -> anyhow::Result<AppendResult> {
    let stream = batch[0].stream.clone();
    let expected = ExpectedVersion::Exact(batch[0].version - 1);
    let events: Vec<NewEvent> = batch.iter().map(new_event).collect();
    match target.append(&stream, expected, events).await {
        Err(Error::WrongExpectedVersion { .. }) if batch.len() > 1 => {
            let mut last = None;
            for e in &batch {
                let expected = ExpectedVersion::Exact(e.version - 1);
                let r = target.append(&stream, expected, vec![new_event(e)]).await;
                last = Some(r.with_context(|| refused(e))?);
            }
            last.context("a batch holds at least one event")
        }
        other => other.with_context(|| refused(&batch[0])),
    }
}

fn refused(e: &RecordedEvent) -> String {
    format!(
        "the target refused event {} (stream {} version {}, source position {})",
        e.id, e.stream, e.version, e.position
    )
}

fn new_event(e: &RecordedEvent) -> NewEvent {
    NewEvent {
        id: e.id,
        event_type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.metadata.clone(),
    }
}

async fn copy_snapshots(
    source: &Arc<dyn EventStore>,
    target: &Arc<dyn EventStore>,
    plan: &Plan,
) -> anyhow::Result<()> {
    for info in plan.streams.iter().filter(|s| !s.deleted) {
        if let Some(snapshot) = source.load_snapshot(&info.stream).await? {
            target
                .save_snapshot(snapshot)
                .await
                .with_context(|| format!("cannot save the snapshot of {}", info.stream))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::StreamId;

    fn event(stream: &str, version: u64, position: u64) -> RecordedEvent {
        RecordedEvent {
            id: uuid_for(position),
            stream: StreamId::new(stream).expect("test stream names are valid"),
            version,
            position,
            event_type: "T".into(),
            data: serde_json::Value::Null,
            metadata: Default::default(),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn uuid_for(n: u64) -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(0, n)
    }

    fn shape(batches: &[Vec<RecordedEvent>]) -> Vec<Vec<u64>> {
        batches
            .iter()
            .map(|b| b.iter().map(|e| e.position).collect())
            .collect()
    }

    #[test]
    fn appends_are_runs_of_one_stream_cut_after_each_checkpoint() {
        let page = vec![
            event("a-1", 1, 1),
            event("a-1", 2, 2),
            event("a-1", 3, 4),
            event("b-1", 1, 5),
            event("a-1", 4, 6),
        ];
        assert_eq!(
            shape(&split(page.clone(), &[])),
            [vec![1, 2, 4], vec![5], vec![6]]
        );
        // A checkpoint at 3 (a gap) or at 2 both end a batch at position 2.
        assert_eq!(
            shape(&split(page.clone(), &[3])),
            [vec![1, 2], vec![4], vec![5], vec![6]]
        );
        assert_eq!(
            shape(&split(page, &[2])),
            [vec![1, 2], vec![4], vec![5], vec![6]]
        );
    }

    #[test]
    fn a_checkpoint_maps_to_the_last_copied_event_at_or_below_it() {
        let mut progress = Progress::default();
        let checkpoints = [0, 3, 9];
        // Copying source positions 2 (-> 20) and 4 (-> 40); 9 is beyond the last event.
        map_checkpoints_before(&mut progress, &checkpoints, 2);
        (
            progress.events.source_position,
            progress.events.target_position,
        ) = (2, 20);
        map_checkpoints_before(&mut progress, &checkpoints, 4);
        (
            progress.events.source_position,
            progress.events.target_position,
        ) = (4, 40);
        map_checkpoints_before(&mut progress, &checkpoints, Position::MAX);
        assert_eq!(mapped_checkpoint(&progress, 0), 0, "before the first event");
        assert_eq!(mapped_checkpoint(&progress, 3), 20);
        assert_eq!(mapped_checkpoint(&progress, 9), 40);
    }
}
