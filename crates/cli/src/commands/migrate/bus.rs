//! The bus's copy: consumer groups, the events each group still owes, and dead letters.
//!
//! The bus contract routes a published event to every declared group whose pattern matches;
//! there is no "publish to this group only". So the copy leans on declaration time instead: a
//! group receives only events published after it is declared. Undelivered events are
//! published in their source order, and each group is declared just before its first
//! undelivered event, so it receives that event and what follows — which is exactly what it
//! owes unless it acked some later event out of order (a concurrent consumer did). Such
//! already-consumed copies are then leased and acked away on the target (`settle`). Groups
//! owing nothing are declared last and receive nothing. Dead letters are re-created first,
//! before any undelivered event is published (`dlq`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName};
use indicatif::ProgressBar;

use super::plan::Plan;
use super::progress::Progress;

mod dlq;
mod settle;

pub(super) use dlq::list as dlq_list;

/// Events per publish.
const BATCH: usize = 100;
/// How long a receive of the copy waits for an event before taking the queue as empty.
const WAIT: Duration = Duration::from_millis(500);
/// The lease the copy takes on what it receives; held events are nacked back well before.
const LEASE: Duration = Duration::from_secs(60);

/// One undelivered event and the groups that owe it.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) seq: i64,
    pub(super) topic: TopicName,
    pub(super) event: CloudEvent,
    /// When the earliest owing group would have had it delivered, if that is still ahead.
    pub(super) not_before: Option<SystemTime>,
    pub(super) groups: BTreeSet<GroupName>,
}

/// What the copy did that the operator should know.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Undelivered events that count one more delivery attempt on the target because they
    /// were leased while already-consumed copies were removed.
    pub(super) extra_attempts: u64,
    /// Already-consumed copies that could not be removed, by group.
    pub(super) unsettled: BTreeMap<GroupName, usize>,
}

/// An event's identity on the bus (what publisher dedupe keys on).
pub(super) fn key(event: &CloudEvent) -> (String, String) {
    (event.source.clone(), event.id.clone())
}

pub(super) fn messages(plan: &Plan) -> Vec<Message> {
    let now = SystemTime::now();
    let mut out: Vec<Message> = Vec::new();
    for p in &plan.pending {
        let delay = (p.visible_at > now).then_some(p.visible_at);
        match out.last_mut() {
            Some(m) if m.seq == p.seq => {
                m.groups.insert(p.group.clone());
                // Deliverable now to any owing group means deliverable now on the target.
                m.not_before = m.not_before.zip(delay).map(|(a, b)| a.min(b));
            }
            _ => out.push(Message {
                seq: p.seq,
                topic: p.topic.clone(),
                event: p.event.clone(),
                not_before: delay,
                groups: BTreeSet::from([p.group.clone()]),
            }),
        }
    }
    out
}

pub(super) async fn copy(
    plan: &Plan,
    target: &Arc<dyn Backend>,
    progress: &mut Progress,
    bar: &ProgressBar,
) -> anyhow::Result<Outcome> {
    let specs: BTreeMap<GroupName, GroupSpec> = plan
        .groups
        .iter()
        .map(|g| (g.spec.name.clone(), g.spec.clone()))
        .collect();
    let messages = messages(plan);
    bar.set_message("dead letters");
    dlq::copy(plan, &specs, target, progress).await?;
    bar.set_message("undelivered events");
    publish_pending(&messages, &specs, target, progress, bar).await?;
    for spec in specs.values() {
        target.declare_group(spec).await?;
    }
    bar.set_message("removing copies groups had consumed");
    let outcome = settle::run(plan, &messages, &specs, target, progress).await?;
    progress.bus.done = true;
    progress.save()?;
    Ok(outcome)
}

/// The first undelivered event of each group.
pub(super) fn first_owed(messages: &[Message]) -> BTreeMap<GroupName, i64> {
    let mut first = BTreeMap::new();
    for m in messages {
        for g in &m.groups {
            first.entry(g.clone()).or_insert(m.seq);
        }
    }
    first
}

async fn publish_pending(
    messages: &[Message],
    specs: &BTreeMap<GroupName, GroupSpec>,
    target: &Arc<dyn Backend>,
    progress: &mut Progress,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let first = first_owed(messages);
    let done = progress.bus.published_through;
    // Groups an earlier run declared: declaring again is a no-op.
    for (group, _) in first.iter().filter(|(_, seq)| **seq <= done) {
        declare(specs, group, target).await?;
    }
    let delayed = target.capabilities().delayed_publish;
    let mut batch: Vec<&Message> = Vec::new();
    for m in messages.iter().filter(|m| m.seq > done) {
        let due: Vec<&GroupName> = m.groups.iter().filter(|g| first[*g] == m.seq).collect();
        if !due.is_empty() || batch.len() == BATCH {
            flush(&mut batch, target, progress, delayed, bar).await?;
        }
        for group in due {
            declare(specs, group, target).await?;
        }
        batch.push(m);
    }
    flush(&mut batch, target, progress, delayed, bar).await
}

async fn declare(
    specs: &BTreeMap<GroupName, GroupSpec>,
    group: &GroupName,
    target: &Arc<dyn Backend>,
) -> anyhow::Result<()> {
    let spec = specs
        .get(group)
        .with_context(|| format!("group {group} owes events but is not declared"))?;
    target
        .declare_group(spec)
        .await
        .with_context(|| format!("cannot declare group {group} on the target"))
}

async fn flush(
    batch: &mut Vec<&Message>,
    target: &Arc<dyn Backend>,
    progress: &mut Progress,
    delayed: bool,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let Some(last) = batch.last().map(|m| m.seq) else {
        return Ok(());
    };
    let outgoing: Vec<Outgoing> = batch
        .iter()
        .map(|m| Outgoing {
            topic: m.topic.clone(),
            event: m.event.clone(),
            not_before: m.not_before.filter(|_| delayed),
        })
        .collect();
    target
        .publish(outgoing)
        .await
        .context("cannot publish undelivered events to the target")?;
    bar.inc(batch.len() as u64);
    batch.clear();
    progress.bus.published_through = last;
    progress.save()
}

/// Receives from `group` until it is empty, acking everything: for a group that owes nothing
/// yet and was handed copies meant for another.
pub(super) async fn drain(target: &Arc<dyn Backend>, group: &GroupName) -> anyhow::Result<()> {
    loop {
        let got = target.receive(group, BATCH, LEASE, WAIT).await?;
        if got.is_empty() {
            return Ok(());
        }
        for d in got {
            target.ack(&d.receipt).await?;
        }
    }
}

pub(super) type Keys = HashSet<(String, String)>;
