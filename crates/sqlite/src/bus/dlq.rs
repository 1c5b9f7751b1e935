//! Groups, dead letters and the listings: declare/delete groups, DLQ list/get/replay/purge,
//! topics and group lag.

use std::sync::Arc;

use flotilla_bus::memory::check_same_pattern;
use flotilla_bus::{
    DeadLetter, DlqQuery, Error as BusError, FailureReason, GroupInfo, GroupName, GroupSpec,
    TopicInfo,
};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteBus, from_ms, map_err, now_ms};
use crate::Error;

pub(super) fn load_groups(c: &Connection) -> Result<Vec<GroupSpec>, Error> {
    let mut stmt = c.prepare("SELECT name, pattern FROM bus_groups ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, pattern) = row?;
        // Rows were validated when declared; one that no longer parses is skipped loudly
        // rather than stopping the whole bus.
        match (GroupName::new(name.clone()), TopicPattern::new(pattern)) {
            (Ok(name), Ok(pattern)) => out.push(GroupSpec { name, pattern }),
            _ => tracing::error!(group = %name, "stored group does not parse; ignored"),
        }
    }
    Ok(out)
}

pub(super) fn require_group(bus: &SqliteBus, group: &GroupName) -> Result<(), BusError> {
    let groups = bus.inner.groups.read().unwrap_or_else(|p| p.into_inner());
    if groups.iter().any(|g| g.name == *group) {
        return Ok(());
    }
    Err(BusError::NotFound {
        what: "group",
        id: group.as_str().to_owned(),
    })
}

pub(super) async fn declare_group(bus: &SqliteBus, spec: &GroupSpec) -> Result<(), BusError> {
    let groups = Arc::clone(&bus.inner.groups);
    let wanted = spec.clone();
    let existing = bus
        .db()
        .writer()
        .write(move |c| {
            let mut cache = groups.write().unwrap_or_else(|p| p.into_inner());
            if let Some(g) = cache.iter().find(|g| g.name == wanted.name) {
                return Ok::<_, Error>(Some(g.clone()));
            }
            c.execute(
                "INSERT INTO bus_groups (name, pattern) VALUES (?1, ?2)",
                params![wanted.name.as_str(), wanted.pattern.as_str()],
            )?;
            cache.push(wanted);
            Ok(None)
        })
        .await
        .map_err(map_err)?;
    existing.map_or(Ok(()), |g| check_same_pattern(&g, spec))
}

pub(super) async fn delete_group(bus: &SqliteBus, group: &GroupName) -> Result<(), BusError> {
    let groups = Arc::clone(&bus.inner.groups);
    let name = group.clone();
    bus.db()
        .writer()
        .write(move |c| {
            let g = name.as_str();
            c.execute("DELETE FROM bus_groups WHERE name = ?1", [g])?;
            c.execute("DELETE FROM bus_deliveries WHERE grp = ?1", [g])?;
            c.execute("DELETE FROM bus_dlq WHERE grp = ?1", [g])?;
            c.execute(
                "DELETE FROM bus_messages WHERE NOT EXISTS
                 (SELECT 1 FROM bus_deliveries d WHERE d.seq = bus_messages.seq)",
                [],
            )?;
            let mut cache = groups.write().unwrap_or_else(|p| p.into_inner());
            cache.retain(|s| s.name != name);
            Ok::<_, Error>(())
        })
        .await
        .map_err(map_err)
}

const DLQ_COLUMNS: &str = "id, grp, topic, event, reason, attempts, last_error, published_at, \
                           dead_lettered_at";

/// A stored dead letter, read raw and checked outside the database closure.
struct RawDeadLetter {
    id: i64,
    grp: String,
    topic: String,
    event: String,
    reason: String,
    attempts: u32,
    last_error: String,
    published_at: i64,
    dead_lettered_at: i64,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawDeadLetter> {
    Ok(RawDeadLetter {
        id: r.get(0)?,
        grp: r.get(1)?,
        topic: r.get(2)?,
        event: r.get(3)?,
        reason: r.get(4)?,
        attempts: r.get(5)?,
        last_error: r.get(6)?,
        published_at: r.get(7)?,
        dead_lettered_at: r.get(8)?,
    })
}

fn decode(r: RawDeadLetter) -> Result<DeadLetter, BusError> {
    let corrupt = |e: String| BusError::Backend(format!("stored dead letter {}: {e}", r.id));
    let reason = match r.reason.as_str() {
        "max_deliveries" => FailureReason::MaxDeliveries,
        "rejected" => FailureReason::Rejected,
        other => return Err(corrupt(format!("unknown reason {other:?}"))),
    };
    Ok(DeadLetter {
        id: r.id.to_string(),
        group: GroupName::new(r.grp.clone()).map_err(|e| corrupt(e.to_string()))?,
        topic: TopicName::new(r.topic.clone()).map_err(|e| corrupt(e.to_string()))?,
        event: CloudEvent::from_json_slice(r.event.as_bytes())
            .map_err(|e| corrupt(e.to_string()))?,
        reason,
        attempts: r.attempts,
        last_error: r.last_error,
        published_at: from_ms(r.published_at),
        dead_lettered_at: from_ms(r.dead_lettered_at),
    })
}

fn dlq_id(id: &str) -> Result<i64, BusError> {
    id.parse()
        .map_err(|_| BusError::InvalidInput(format!("dead-letter id {id:?} is not a number")))
}

fn not_found(id: &str) -> BusError {
    BusError::NotFound {
        what: "dead letter",
        id: id.to_owned(),
    }
}

pub(super) async fn list(bus: &SqliteBus, q: &DlqQuery) -> Result<Vec<DeadLetter>, BusError> {
    let after = q.after.as_deref().map(dlq_id).transpose()?.unwrap_or(0);
    let limit = if q.limit == 0 {
        100
    } else {
        q.limit.min(10_000)
    } as i64;
    let group = q.group.as_ref().map(|g| g.as_str().to_owned());
    let rows = bus
        .db()
        .reads()
        .read(move |c| {
            let sql = format!(
                "SELECT {DLQ_COLUMNS} FROM bus_dlq WHERE (?1 IS NULL OR grp = ?1) AND id > ?2
                 ORDER BY id LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![group, after, limit], raw)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .map_err(map_err)?;
    rows.into_iter().map(decode).collect()
}

pub(super) async fn get(bus: &SqliteBus, id: &str) -> Result<DeadLetter, BusError> {
    let key = dlq_id(id)?;
    let row = bus
        .db()
        .reads()
        .read(move |c| {
            let sql = format!("SELECT {DLQ_COLUMNS} FROM bus_dlq WHERE id = ?1");
            Ok(c.query_row(&sql, [key], raw).optional()?)
        })
        .await
        .map_err(map_err)?;
    decode(row.ok_or_else(|| not_found(id))?)
}

pub(super) async fn replay(bus: &SqliteBus, id: &str) -> Result<(), BusError> {
    let key = dlq_id(id)?;
    let found = bus
        .db()
        .writer()
        .write(move |c| replay_in(c, key))
        .await
        .map_err(map_err)?;
    if found { Ok(()) } else { Err(not_found(id)) }
}

/// Moves the entry back as a fresh delivery (attempts 0) in one transaction.
fn replay_in(c: &Connection, key: i64) -> Result<bool, Error> {
    let now = now_ms();
    let moved = c.execute(
        "INSERT INTO bus_messages (topic, event, published_at)
         SELECT topic, event, published_at FROM bus_dlq
         WHERE id = ?1 AND grp IN (SELECT name FROM bus_groups)",
        [key],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    let seq = c.last_insert_rowid();
    c.execute(
        "INSERT INTO bus_deliveries (grp, seq, okey, visible_at)
         SELECT grp, ?2, okey, ?3 FROM bus_dlq WHERE id = ?1",
        params![key, seq, now],
    )?;
    c.execute("DELETE FROM bus_dlq WHERE id = ?1", [key])?;
    Ok(true)
}

pub(super) async fn purge(
    bus: &SqliteBus,
    group: &GroupName,
    ids: &[String],
) -> Result<u64, BusError> {
    let keys = ids
        .iter()
        .map(|i| dlq_id(i))
        .collect::<Result<Vec<_>, _>>()?;
    let grp = group.as_str().to_owned();
    bus.db()
        .writer()
        .write(move |c| {
            if keys.is_empty() {
                return Ok::<_, Error>(c.execute("DELETE FROM bus_dlq WHERE grp = ?1", [&grp])?);
            }
            let mut stmt = c.prepare_cached("DELETE FROM bus_dlq WHERE grp = ?1 AND id = ?2")?;
            let mut n = 0;
            for k in keys {
                n += stmt.execute(params![grp, k])?;
            }
            Ok(n)
        })
        .await
        .map(|n| n as u64)
        .map_err(map_err)
}

pub(super) async fn topics(bus: &SqliteBus) -> Result<Vec<TopicInfo>, BusError> {
    let rows: Vec<(String, i64)> = bus
        .db()
        .reads()
        .read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT name, published FROM bus_topics ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(name, n)| {
            let name = TopicName::new(name).map_err(|e| BusError::Backend(e.to_string()))?;
            Ok(TopicInfo {
                name,
                published: u64::try_from(n).unwrap_or(0),
            })
        })
        .collect()
}

pub(super) async fn groups(bus: &SqliteBus) -> Result<Vec<GroupInfo>, BusError> {
    let specs = bus
        .inner
        .groups
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let counts: Vec<(String, i64, i64)> = bus
        .db()
        .reads()
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT g.name,
                        (SELECT count(*) FROM bus_deliveries d WHERE d.grp = g.name),
                        (SELECT count(*) FROM bus_dlq q WHERE q.grp = g.name)
                 FROM bus_groups g",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .map_err(map_err)?;
    Ok(specs
        .into_iter()
        .map(|spec| {
            let (pending, dead) = counts
                .iter()
                .find(|(n, _, _)| n == spec.name.as_str())
                .map_or((0, 0), |(_, p, d)| (*p, *d));
            GroupInfo {
                spec,
                pending: u64::try_from(pending).unwrap_or(0),
                dead_letters: u64::try_from(dead).unwrap_or(0),
            }
        })
        .collect())
}
