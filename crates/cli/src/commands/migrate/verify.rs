//! The end of every run: source and target compared part by part — each stream's events
//! (count and a checksum over id, version, type, data and metadata), snapshots, checkpoints
//! (at their mapped positions), each group's undelivered events (by count: reading a queue
//! would deliver it), each group's dead letters and the catalog (count and checksum).

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_bus::{Backend, DeadLetter};
use flotilla_eventstore::{Error, EventStore, ReadStream, RecordedEvent, StreamInfo};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::engines::{Source, Target};
use super::plan::Plan;
use super::progress::Progress;

/// One compared part: what the source holds, what the target holds.
#[derive(Debug)]
pub(super) struct Row {
    kind: &'static str,
    name: String,
    source: String,
    target: String,
}

impl Row {
    fn new(kind: &'static str, name: impl Into<String>, source: String, target: String) -> Self {
        Self {
            kind,
            name: name.into(),
            source,
            target,
        }
    }

    pub(super) fn ok(&self) -> bool {
        self.source == self.target
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "part": self.kind, "name": self.name, "source": self.source,
            "target": self.target, "match": if self.ok() { "yes" } else { "NO" },
        })
    }
}

pub(super) async fn run(
    source: &Source,
    target: &Target,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for info in &plan.streams {
        rows.push(stream(&*source.events, &*target.events, info).await?);
        if let Some(row) = snapshot(&*source.events, &*target.events, info).await? {
            rows.push(row);
        }
    }
    for (name, position) in &plan.checkpoints {
        let expected = super::events::mapped_checkpoint(progress, *position);
        let actual = target.events.load_checkpoint(name).await?;
        let show = |p: Option<u64>| p.map_or("none".to_owned(), |p| format!("position {p}"));
        rows.push(Row::new(
            "checkpoint",
            name.clone(),
            show(Some(expected)),
            show(actual),
        ));
    }
    rows.extend(groups(plan, &target.bus).await?);
    if let Some(catalog) = &target.catalog {
        let there = catalog.load().await?;
        let sum = |c: &flotilla_discovery::catalog::StoredCatalog| {
            let mut docs: Vec<Value> = c
                .entries
                .iter()
                .map(|e| json!([e.service.as_str(), e.id, e.document]))
                .collect();
            docs.sort_by_key(|d| d.to_string());
            summary(docs.len(), digest(docs.iter()))
        };
        rows.push(Row::new(
            "catalog",
            "entries",
            sum(&plan.catalog),
            sum(&there),
        ));
    }
    Ok(rows)
}

async fn stream(
    source: &dyn EventStore,
    target: &dyn EventStore,
    info: &StreamInfo,
) -> anyhow::Result<Row> {
    let name = info.stream.to_string();
    let (s, t) = (events(source, info).await?, events(target, info).await?);
    Ok(Row::new("stream", name, s, t))
}

/// A stream's events as "count, checksum", or "deleted".
async fn events(store: &dyn EventStore, info: &StreamInfo) -> anyhow::Result<String> {
    match store.read_stream(&info.stream, ReadStream::all()).await {
        Ok(events) => Ok(summary(
            events.len(),
            digest(events.iter().map(identity).collect::<Vec<_>>().iter()),
        )),
        Err(Error::StreamDeleted { .. }) => Ok("deleted".to_owned()),
        Err(e) => Err(e.into()),
    }
}

/// What must survive a migration of an event (its time and position are the target's own).
fn identity(e: &RecordedEvent) -> Value {
    json!([e.id, e.version, e.event_type, e.data, e.metadata])
}

async fn snapshot(
    source: &dyn EventStore,
    target: &dyn EventStore,
    info: &StreamInfo,
) -> anyhow::Result<Option<Row>> {
    if info.deleted {
        return Ok(None);
    }
    let Some(s) = source.load_snapshot(&info.stream).await? else {
        return Ok(None);
    };
    let show = |snap: &flotilla_eventstore::Snapshot| {
        format!(
            "version {}, {}",
            snap.version,
            digest([&snap.state].into_iter())
        )
    };
    let t = target.load_snapshot(&info.stream).await?;
    let t = t.as_ref().map_or("none".to_owned(), show);
    Ok(Some(Row::new(
        "snapshot",
        info.stream.to_string(),
        show(&s),
        t,
    )))
}

async fn groups(plan: &Plan, target: &Arc<dyn Backend>) -> anyhow::Result<Vec<Row>> {
    let there: BTreeMap<_, _> = target
        .groups()
        .await?
        .into_iter()
        .map(|g| (g.spec.name.clone(), g))
        .collect();
    let mut rows = Vec::new();
    for group in &plan.groups {
        let name = &group.spec.name;
        let owed = plan.pending.iter().filter(|p| &p.group == name).count();
        let t = there.get(name).map_or("not declared".to_owned(), |g| {
            format!(
                "{} on {}, {} undelivered",
                g.spec.name, g.spec.pattern, g.pending
            )
        });
        let s = format!("{} on {}, {owed} undelivered", name, group.spec.pattern);
        rows.push(Row::new("group", name.to_string(), s, t));
        let letters: Vec<&DeadLetter> = plan
            .dead_letters
            .iter()
            .filter(|l| &l.group == name)
            .collect();
        let target_letters = super::bus::dlq_list(target, name).await?;
        let s = dead_letters(letters.iter().copied());
        let t = dead_letters(target_letters.iter());
        rows.push(Row::new("dlq", name.to_string(), s, t));
    }
    Ok(rows)
}

fn dead_letters<'a>(letters: impl Iterator<Item = &'a DeadLetter>) -> String {
    let mut docs: Vec<Value> = letters
        .map(|l| {
            json!([
                l.topic.as_str(),
                l.event.to_json_value(),
                l.reason,
                l.last_error
            ])
        })
        .collect();
    docs.sort_by_key(canonical);
    summary(docs.len(), digest(docs.iter()))
}

fn summary(count: usize, digest: String) -> String {
    format!("{count}, {digest}")
}

/// The first 12 hex digits of SHA-256 over the canonical JSON of each item, one per line.
fn digest<'a>(items: impl Iterator<Item = &'a Value>) -> String {
    let mut hash = Sha256::new();
    for item in items {
        hash.update(canonical(item).as_bytes());
        hash.update(b"\n");
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex[..12].to_owned()
}

/// JSON with object keys sorted at every level, so two engines that keep keys in another
/// order (PostgreSQL's `jsonb` sorts them its own way) checksum alike.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_change_a_checksum() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":null}}"#)
            .unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#)
            .unwrap_or_default();
        assert_eq!(digest([&a].into_iter()), digest([&b].into_iter()));
        assert_ne!(digest([&a].into_iter()), digest([&Value::Null].into_iter()));
    }
}
