//! Publishing: dedupe, store once, route one delivery row per matching group.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use flotilla_bus::{Error as BusError, GroupSpec, Outgoing, PublishOutcome};
use flotilla_core::TopicName;
use rusqlite::{CachedStatement, Connection, params};

use super::{SqliteBus, dur_ms, map_err, now_ms, to_ms};
use crate::Error;
use crate::writer::Merge;

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
    let write = Publish {
        rows,
        now,
        cutoff: now - dur_ms(bus.inner.options.dedupe_window),
        prune: due_for_prune(bus, now),
        groups: Arc::clone(&bus.inner.groups),
    };
    bus.db().writer().write_merged(write).await.map_err(map_err)
}

/// One publish call, run by the writer together with the other publishes of its batch.
struct Publish {
    rows: Vec<Row>,
    now: i64,
    /// A `(source, id)` seen before this has left the dedupe window.
    cutoff: i64,
    /// Whether to delete expired dedupe entries first.
    prune: bool,
    groups: Groups,
}

/// The declared groups, as the bus shares them with the writer thread.
type Groups = Arc<RwLock<Vec<GroupSpec>>>;

impl Merge for Publish {
    type Output = Vec<PublishOutcome>;
    type Error = Error;

    /// The publishes of a batch share the statements, one routing per topic and one counter
    /// update per topic.
    fn run_all(
        c: &Connection,
        writes: &[Self],
    ) -> Result<Vec<Result<Vec<PublishOutcome>, Error>>, Error> {
        let mut st = Statements::prepare(c)?;
        let mut routes = Routes::default();
        let mut topics: HashMap<&TopicName, i64> = HashMap::new();
        let mut answers = Vec::with_capacity(writes.len());
        for w in writes {
            if w.prune {
                prune(c, w.cutoff)?;
            }
            let out = store(&mut st, w, &mut routes, &mut topics)?;
            answers.push(Ok(out));
        }
        count(c, topics)?;
        Ok(answers)
    }

    fn run_one(c: &Connection, w: &Self) -> Result<Vec<PublishOutcome>, Error> {
        if w.prune {
            prune(c, w.cutoff)?;
        }
        let mut st = Statements::prepare(c)?;
        let mut topics = HashMap::new();
        let out = store(&mut st, w, &mut Routes::default(), &mut topics)?;
        count(c, topics)?;
        Ok(out)
    }
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

fn prune(c: &Connection, cutoff: i64) -> Result<(), Error> {
    c.prepare_cached("DELETE FROM bus_dedupe WHERE at < ?1")?
        .execute([cutoff])?;
    Ok(())
}

/// The statements a publish runs per event.
struct Statements<'c> {
    conn: &'c Connection,
    dedupe: CachedStatement<'c>,
    message: CachedStatement<'c>,
    delivery: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> Result<Self, Error> {
        Ok(Self {
            conn,
            // A pair seen before the cutoff has left the window: it counts as new again.
            dedupe: conn.prepare_cached(
                "INSERT INTO bus_dedupe (source, id, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source, id) DO UPDATE SET at = excluded.at
                 WHERE bus_dedupe.at < ?4",
            )?,
            message: conn.prepare_cached(
                "INSERT INTO bus_messages (topic, event, published_at) VALUES (?1, ?2, ?3)",
            )?,
            delivery: conn.prepare_cached(
                "INSERT INTO bus_deliveries (grp, seq, okey, visible_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
        })
    }
}

/// The groups each topic routes to, worked out once per topic for the publishes run together.
#[derive(Default)]
struct Routes {
    known: Vec<(Groups, TopicName, Vec<String>)>,
}

impl Routes {
    fn of(&mut self, groups: &Groups, topic: &TopicName) -> &[String] {
        let at = match self
            .known
            .iter()
            .position(|(g, t, _)| Arc::ptr_eq(g, groups) && t == topic)
        {
            Some(at) => at,
            None => {
                let declared = groups.read().unwrap_or_else(|p| p.into_inner());
                let matching = declared.iter().filter(|g| g.pattern.matches(topic));
                let names = matching.map(|g| g.name.as_str().to_owned()).collect();
                drop(declared);
                self.known.push((Arc::clone(groups), topic.clone(), names));
                self.known.len() - 1
            }
        };
        &self.known[at].2
    }
}

/// Stores the events of one publish; counts them per topic into `topics`.
fn store<'w>(
    st: &mut Statements<'_>,
    w: &'w Publish,
    routes: &mut Routes,
    topics: &mut HashMap<&'w TopicName, i64>,
) -> Result<Vec<PublishOutcome>, Error> {
    let mut out = Vec::with_capacity(w.rows.len());
    for r in &w.rows {
        if st
            .dedupe
            .execute(params![r.source, r.id, w.now, w.cutoff])?
            == 0
        {
            out.push(PublishOutcome::Duplicate);
            continue;
        }
        out.push(PublishOutcome::Stored);
        let groups = routes.of(&w.groups, &r.topic);
        if !groups.is_empty() {
            st.message
                .execute(params![r.topic.as_str(), r.event, w.now])?;
            let seq = st.conn.last_insert_rowid();
            for g in groups {
                st.delivery.execute(params![g, seq, r.key, r.visible_at])?;
            }
        }
        *topics.entry(&r.topic).or_default() += 1;
    }
    Ok(out)
}

/// Adds what was published to each topic's counter, one update per topic.
fn count(c: &Connection, topics: HashMap<&TopicName, i64>) -> Result<(), Error> {
    if topics.is_empty() {
        return Ok(());
    }
    let mut count = c.prepare_cached(
        "INSERT INTO bus_topics (name, published) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET published = published + excluded.published",
    )?;
    for (t, n) in topics {
        count.execute(params![t.as_str(), n])?;
    }
    Ok(())
}
