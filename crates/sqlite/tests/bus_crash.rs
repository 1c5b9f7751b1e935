//! Crash test of the embedded bus: publishers and a consumer under load are killed with
//! SIGKILL at random moments, restarted, and finally drained; a checker over the recorded
//! history counts lost acknowledged publishes (must be 0), events redelivered after their
//! ack was confirmed (must be 0), unexpected events (must be 0) and duplicates (allowed:
//! redeliveries of events whose ack was not confirmed before the kill).
//!
//! The test binary re-runs itself as the worker (`bus_crash_child`, active only when
//! `FLOTILLA_BUS_CRASH_DB` is set). The worker prints `try <id>` before publishing,
//! `pub <id>` once the publish returned Ok, `recv <id> <attempt>` on each delivery and
//! `ack <id>` once the ack returned Ok. Results are recorded in docs/RELIABILITY.md.
#![cfg(feature = "bus")]
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Options};

const ENV_DB: &str = "FLOTILLA_BUS_CRASH_DB";
const ENV_DRAIN: &str = "FLOTILLA_BUS_CRASH_DRAIN";
const PUBLISHERS: usize = 4;
const BATCH: usize = 10;
/// Publishers of one event per call: the writer gathers their publishes into shared commits,
/// and each must still be durable once answered.
const SINGLE_PUBLISHERS: usize = 16;
const ROUNDS: usize = 8;
const LEASE: Duration = Duration::from_secs(1);

type Out = Arc<Mutex<std::io::Stdout>>;

fn say(out: &Out, line: String) {
    let mut o = out.lock().unwrap();
    writeln!(o, "{line}").unwrap();
    o.flush().unwrap();
}

async fn open(path: &Path) -> Arc<SqliteBus> {
    let db = Database::open(Options::new(path)).unwrap();
    let bus = SqliteBus::open(db, BusOptions::default()).unwrap();
    let spec = GroupSpec {
        name: GroupName::new("crash").unwrap(),
        pattern: TopicPattern::new("crash.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    Arc::new(bus)
}

async fn publisher(bus: Arc<SqliteBus>, out: Out, w: usize, size: usize) {
    let topic = TopicName::new("crash.e").unwrap();
    for b in 0u64.. {
        let batch: Vec<_> = (0..size)
            .map(|i| {
                let mut e = CloudEvent::new("/crash", "crash.e");
                e.id = format!("{}-{w}-{b}-{i}", std::process::id());
                say(&out, format!("try {}", e.id));
                Outgoing::new(topic.clone(), e)
            })
            .collect();
        let ids: Vec<_> = batch.iter().map(|o| o.event.id.clone()).collect();
        bus.publish(batch).await.unwrap();
        for id in ids {
            say(&out, format!("pub {id}"));
        }
    }
}

/// Receives and acks until `idle` passes with nothing delivered.
async fn consumer(bus: Arc<SqliteBus>, out: Out, idle: Duration) {
    let group = GroupName::new("crash").unwrap();
    loop {
        let batch = bus.receive(&group, 32, LEASE, idle).await.unwrap();
        if batch.is_empty() {
            return;
        }
        for d in batch {
            say(&out, format!("recv {} {}", d.event.id, d.attempt));
            bus.ack(&d.receipt).await.unwrap();
            say(&out, format!("ack {}", d.event.id));
        }
    }
}

/// The worker process (does nothing unless the parent set `FLOTILLA_BUS_CRASH_DB`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_crash_child() {
    let Ok(path) = std::env::var(ENV_DB) else {
        return;
    };
    let bus = open(Path::new(&path)).await;
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    // The test harness has printed `test bus_crash_child ... ` without a newline: end that
    // line so the first record starts its own.
    say(&out, String::new());
    if std::env::var(ENV_DRAIN).is_ok() {
        // Long enough for every lease a killed worker held to expire.
        return consumer(bus, out, LEASE * 4).await;
    }
    for w in 0..PUBLISHERS + SINGLE_PUBLISHERS {
        let size = if w < PUBLISHERS { BATCH } else { 1 };
        tokio::spawn(publisher(Arc::clone(&bus), Arc::clone(&out), w, size));
    }
    consumer(bus, out, Duration::from_secs(3600)).await;
}

/// Runs the worker; kills it with SIGKILL after `kill_after` lines (or lets it finish when
/// `None`); answers the complete lines it printed.
fn run_child(db: &Path, kill_after: Option<usize>) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "bus_crash_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ENV_DB, db)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if kill_after.is_none() {
        cmd.env(ENV_DRAIN, "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut killed = false;
    let mut buf = Vec::new();
    // Read to the end of the pipe even after the kill: what the worker wrote before it died
    // is part of the history (a publish it reported may have been consumed already).
    while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
        // Only whole lines: the kill may cut the last one.
        if buf.ends_with(b"\n")
            && let Ok(line) = std::str::from_utf8(&buf[..buf.len() - 1])
            && ["try ", "pub ", "recv ", "ack "]
                .iter()
                .any(|p| line.starts_with(p))
        {
            lines.push(line.to_owned());
        }
        buf.clear();
        if !killed && kill_after.is_some_and(|k| lines.len() >= k) {
            child.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    child.wait().unwrap();
    lines
}

#[derive(Debug, Default)]
struct Verdict {
    tried: usize,
    published: usize,
    lost: usize,
    redelivered_after_ack: usize,
    duplicates: usize,
    unexpected: usize,
    unconfirmed_acks: usize,
}

fn check(history: &[String]) -> Verdict {
    let (mut tried, mut published) = (HashSet::new(), HashSet::new());
    let mut acked: HashSet<&str> = HashSet::new();
    let mut deliveries: HashMap<&str, usize> = HashMap::new();
    let mut v = Verdict::default();
    for line in history {
        let mut parts = line.split(' ');
        let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "try" => drop(tried.insert(id)),
            "pub" => drop(published.insert(id)),
            "ack" => drop(acked.insert(id)),
            "recv" => {
                if !tried.contains(id) {
                    v.unexpected += 1;
                    eprintln!(
                        "UNEXPECTED {id}: {:?}",
                        history
                            .iter()
                            .filter(|l| l.contains(id))
                            .collect::<Vec<_>>()
                    );
                }
                v.redelivered_after_ack += usize::from(acked.contains(id));
                *deliveries.entry(id).or_default() += 1;
            }
            _ => {}
        }
    }
    v.tried = tried.len();
    v.published = published.len();
    v.lost = published
        .iter()
        .filter(|id| !deliveries.contains_key(*id))
        .count();
    // Delivered, never confirmed acked: the kill came between the ack's commit and its
    // `ack` line, or before the ack (then a redelivery follows, counted as a duplicate).
    v.unconfirmed_acks = deliveries.keys().filter(|id| !acked.contains(*id)).count();
    v.duplicates = deliveries.values().map(|n| n - 1).sum();
    v
}

#[test]
fn killed_workers_lose_no_acknowledged_event_and_never_redeliver_an_acked_one() {
    if std::env::var(ENV_DB).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut seed = std::process::id() as u64 | 1;
    let mut history = Vec::new();
    for _ in 0..ROUNDS {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = 500 + (seed >> 33) as usize % 4_000;
        history.extend(run_child(&db, Some(kill_after)));
    }
    history.extend(run_child(&db, None));
    let v = check(&history);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pending = rt.block_on(async { open(&db).await.groups().await.unwrap()[0].pending });
    assert_eq!(pending, 0, "after the drain every stored event was acked");
    println!("bus crash test: rounds={ROUNDS} {v:?}");
    assert!(v.published > 0, "the workers published: {v:?}");
    assert_eq!(v.lost, 0, "acknowledged publishes never delivered: {v:?}");
    assert!(
        v.unconfirmed_acks <= ROUNDS * 32,
        "at most one batch in flight per kill: {v:?}"
    );
    assert_eq!(v.redelivered_after_ack, 0, "{v:?}");
    assert_eq!(v.unexpected, 0, "{v:?}");
}
