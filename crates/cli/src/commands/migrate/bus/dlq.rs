//! Dead letters, re-created on the target through the contract: declare the group, publish
//! the event, receive it and dead-letter it with its original reason and last error. Done
//! group by group before any undelivered event is published, so the groups declared so far
//! owe nothing yet and a copy routed to one of them is simply acked away.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context as _;
use flotilla_bus::{Backend, DeadLetter, DlqQuery, Failure, GroupName, GroupSpec, Outgoing};

use super::{BATCH, Keys, LEASE, WAIT, drain, key};
use crate::commands::migrate::plan::{PAGE, Plan};
use crate::commands::migrate::progress::Progress;

pub(super) async fn copy(
    plan: &Plan,
    specs: &BTreeMap<GroupName, GroupSpec>,
    target: &Arc<dyn Backend>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut by_group: BTreeMap<&GroupName, Vec<&DeadLetter>> = BTreeMap::new();
    for letter in &plan.dead_letters {
        by_group.entry(&letter.group).or_default().push(letter);
    }
    let mut declared: Vec<&GroupSpec> = Vec::new();
    for (group, letters) in by_group {
        let spec = specs
            .get(group)
            .with_context(|| format!("dead letters of group {group}, which is not declared"))?;
        if !progress.bus.dlq_done.contains(group.as_str()) {
            recreate(spec, &letters, target).await?;
            for other in declared.iter().filter(|o| routed(o, &letters)) {
                drain(target, &other.name).await?;
            }
            progress.bus.dlq_done.insert(group.to_string());
            progress.save()?;
        }
        declared.push(spec);
    }
    Ok(())
}

fn routed(spec: &GroupSpec, letters: &[&DeadLetter]) -> bool {
    letters.iter().any(|l| spec.pattern.matches(&l.topic))
}

async fn recreate(
    spec: &GroupSpec,
    letters: &[&DeadLetter],
    target: &Arc<dyn Backend>,
) -> anyhow::Result<()> {
    let group = &spec.name;
    target
        .declare_group(spec)
        .await
        .with_context(|| format!("cannot declare group {group} on the target"))?;
    let there = existing(target, group).await?;
    let mut todo: HashMap<(String, String), &DeadLetter> = letters
        .iter()
        .map(|l| (key(&l.event), *l))
        .filter(|(k, _)| !there.contains(k))
        .collect();
    for chunk in letters.chunks(BATCH) {
        let batch = chunk
            .iter()
            .filter(|l| todo.contains_key(&key(&l.event)))
            .map(|l| Outgoing::new(l.topic.clone(), l.event.clone()))
            .collect::<Vec<_>>();
        if !batch.is_empty() {
            target
                .publish(batch)
                .await
                .context("cannot publish dead letters")?;
        }
    }
    while !todo.is_empty() {
        let got = target.receive(group, BATCH, LEASE, WAIT).await?;
        if got.is_empty() {
            break;
        }
        for d in got {
            match todo.remove(&key(&d.event)) {
                Some(letter) => target.dead_letter(&d.receipt, failure(letter)).await?,
                None => target.ack(&d.receipt).await?,
            }
        }
    }
    match todo.len() {
        0 => Ok(()),
        n => anyhow::bail!("{n} dead letters of group {group} did not reach the target's queue"),
    }
}

fn failure(letter: &DeadLetter) -> Failure {
    Failure {
        reason: letter.reason,
        last_error: letter.last_error.clone(),
    }
}

/// Events already in the target's dead-letter queue of `group` (an earlier run put them).
pub(in crate::commands::migrate) async fn existing(
    target: &Arc<dyn Backend>,
    group: &GroupName,
) -> anyhow::Result<Keys> {
    Ok(list(target, group)
        .await?
        .iter()
        .map(|l| key(&l.event))
        .collect())
}

/// Every dead letter of `group` on `bus`.
pub(in crate::commands::migrate) async fn list(
    bus: &Arc<dyn Backend>,
    group: &GroupName,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut out: Vec<DeadLetter> = Vec::new();
    loop {
        let query = DlqQuery {
            group: Some(group.clone()),
            after: out.last().map(|d| d.id.clone()),
            limit: PAGE,
        };
        let page = bus.dlq_list(&query).await?;
        let full = page.len() == PAGE;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}
