//! Removes from each target group the copies of events it had already consumed on the source
//! (it acked them out of order, or it was declared early to take dead letters): lease the
//! group's events one at a time, ack those copies, and hand every other event back at once.
//! An event handed back counts one more delivery attempt on the target — the cost of the
//! contract having no "publish to one group".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flotilla_bus::{Backend, Delivery, GroupName, GroupSpec};

use super::{Keys, LEASE, Message, Outcome, WAIT, first_owed, key};
use crate::commands::migrate::plan::Plan;
use crate::commands::migrate::progress::Progress;

/// Passes over one group before the copies left are reported (a backend that orders by key
/// hides a key's later events while an earlier one is leased).
const ROUNDS: usize = 3;

pub(super) async fn run(
    plan: &Plan,
    messages: &[Message],
    specs: &BTreeMap<GroupName, GroupSpec>,
    target: &Arc<dyn Backend>,
    progress: &mut Progress,
) -> anyhow::Result<Outcome> {
    let first = first_owed(messages);
    let with_letters: Vec<&GroupName> = plan.dead_letters.iter().map(|l| &l.group).collect();
    let mut outcome = Outcome::default();
    for spec in specs.values() {
        let name = &spec.name;
        let declared_at = match (with_letters.contains(&name), first.get(name)) {
            (true, _) => i64::MIN,
            (false, Some(seq)) => *seq,
            (false, None) => continue,
        };
        if progress.bus.settled.contains(name.as_str()) {
            continue;
        }
        let copies: Keys = messages
            .iter()
            .filter(|m| m.seq >= declared_at && !m.groups.contains(name))
            .filter(|m| spec.pattern.matches(&m.topic))
            .map(|m| key(&m.event))
            .collect();
        if !copies.is_empty() {
            let (left, handed_back) = settle(target, name, copies, messages).await?;
            outcome.extra_attempts += handed_back;
            if left > 0 {
                outcome.unsettled.insert(name.clone(), left);
            }
        }
        progress.bus.settled.insert(name.to_string());
        progress.save()?;
    }
    Ok(outcome)
}

/// Returns how many copies are left and how many owed events were handed back.
async fn settle(
    target: &Arc<dyn Backend>,
    group: &GroupName,
    mut copies: Keys,
    messages: &[Message],
) -> anyhow::Result<(usize, u64)> {
    let mut handed_back = 0;
    for _ in 0..ROUNDS {
        let before = copies.len();
        let mut held: Vec<Delivery> = Vec::new();
        while !copies.is_empty() {
            let Some(d) = target.receive(group, 1, LEASE, WAIT).await?.pop() else {
                break;
            };
            match copies.remove(&key(&d.event)) {
                true => target.ack(&d.receipt).await?,
                false => held.push(d),
            }
        }
        handed_back += held.len() as u64;
        for d in held {
            target.nack(&d.receipt, delay_of(&d, messages)).await?;
        }
        if copies.is_empty() || copies.len() == before {
            break;
        }
    }
    Ok((copies.len(), handed_back))
}

/// What is left of the delay the event had on the source.
fn delay_of(d: &Delivery, messages: &[Message]) -> Duration {
    let k = key(&d.event);
    messages
        .iter()
        .find(|m| key(&m.event) == k)
        .and_then(|m| m.not_before)
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::ZERO)
}
