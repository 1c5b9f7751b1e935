//! Publishing: dedupe, store once, route one delivery row per matching group.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flotilla_bus::{Error as BusError, Outgoing, PublishOutcome};
use flotilla_core::TopicName;
use rusqlite::{Connection, params};

use super::{SqliteBus, dur_ms, map_err, now_ms, to_ms};
use crate::Error;

/// How often (at most) publish also deletes expired dedupe entries.
const PRUNE_EVERY_MS: i64 = 10_000;

/// One event, encoded before it reaches the writer thread so the thread only runs SQL.
struct Row {
    topic: TopicName,
    event: String,
    source: String,
    id: String,
    key: Option<String>,
    visible_at: i64,
}

pub(super) async fn publish(
    bus: &SqliteBus,
    batch: Vec<Outgoing>,
) -> Result<Vec<PublishOutcome>, BusError> {
    let now = now_ms();
    let rows = batch
        .into_iter()
        .map(|o| encode(o, now))
        .collect::<Result<Vec<_>, BusError>>()?;
    let cutoff = now - dur_ms(bus.inner.options.dedupe_window);
    let prune = due_for_prune(bus, now);
    let groups = Arc::clone(&bus.inner.groups);
    bus.db()
        .writer()
        .write(move |c| {
            if prune {
                c.execute("DELETE FROM bus_dedupe WHERE at < ?1", [cutoff])?;
            }
            let groups = groups.read().unwrap_or_else(|p| p.into_inner());
            let route = |t: &TopicName| -> Vec<String> {
                let matching = groups.iter().filter(|g| g.pattern.matches(t));
                matching.map(|g| g.name.as_str().to_owned()).collect()
            };
            store(c, rows, now, cutoff, route)
        })
        .await
        .map_err(map_err)
}

fn encode(o: Outgoing, now: i64) -> Result<Row, BusError> {
    o.event.validate()?;
    let visible_at = o.not_before.map_or(now, |t| to_ms(t).max(now));
    Ok(Row {
        key: o.ordering_key().map(str::to_owned),
        event: o.event.to_json_value().to_string(),
        source: o.event.source,
        id: o.event.id,
        topic: o.topic,
        visible_at,
    })
}

fn due_for_prune(bus: &SqliteBus, now: i64) -> bool {
    let last = bus.inner.last_prune.load(Ordering::Relaxed);
    now - last >= PRUNE_EVERY_MS
        && bus
            .inner
            .last_prune
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn store(
    c: &Connection,
    rows: Vec<Row>,
    now: i64,
    cutoff: i64,
    route: impl Fn(&TopicName) -> Vec<String>,
) -> Result<Vec<PublishOutcome>, Error> {
    // A pair seen before the cutoff has left the window: it counts as new again.
    let mut dedupe = c.prepare_cached(
        "INSERT INTO bus_dedupe (source, id, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (source, id) DO UPDATE SET at = excluded.at WHERE bus_dedupe.at < ?4",
    )?;
    let mut message = c.prepare_cached(
        "INSERT INTO bus_messages (topic, event, published_at) VALUES (?1, ?2, ?3)",
    )?;
    let mut delivery = c.prepare_cached(
        "INSERT INTO bus_deliveries (grp, seq, okey, visible_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut topics: HashMap<TopicName, i64> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if dedupe.execute(params![r.source, r.id, now, cutoff])? == 0 {
            out.push(PublishOutcome::Duplicate);
            continue;
        }
        out.push(PublishOutcome::Stored);
        let groups = route(&r.topic);
        if !groups.is_empty() {
            message.execute(params![r.topic.as_str(), r.event, now])?;
            let seq = c.last_insert_rowid();
            for g in groups {
                delivery.execute(params![g, seq, r.key, r.visible_at])?;
            }
        }
        *topics.entry(r.topic).or_default() += 1;
    }
    let mut count = c.prepare_cached(
        "INSERT INTO bus_topics (name, published) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET published = published + excluded.published",
    )?;
    for (t, n) in topics {
        count.execute(params![t.as_str(), n])?;
    }
    Ok(out)
}
