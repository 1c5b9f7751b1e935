//! Crash test: appenders under load are killed with SIGKILL at random moments; after every
//! restart each acknowledged append is present and no batch is half-written.
//!
//! The test binary re-runs itself as the appender (`crash_child`, active only when
//! `FLOTILLA_ES_CRASH_DB` is set); the parent reads the child's acknowledgements line by line,
//! kills it after a random number of them, reopens the database and checks it. Results are
//! recorded in docs/RELIABILITY.md.
#![cfg(feature = "eventstore")]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use flotilla_core::StreamId;
use flotilla_eventstore::{EventStore, ExpectedVersion, NewEvent, ReadAll, ReadStream};
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Options};
use serde_json::json;

const ENV: &str = "FLOTILLA_ES_CRASH_DB";
const APPENDERS: usize = 16;
const BATCH: usize = 3;
const ROUNDS: usize = 6;

async fn open(path: &Path) -> SqliteEventStore {
    let db = Database::open(Options::new(path)).unwrap();
    SqliteEventStore::open(db, None).await.unwrap()
}

/// The appender process: 16 tasks append 3-event batches with exact expected versions and
/// print `ack <stream> <last_version> <last_id>` once each append returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(path) = std::env::var(ENV) else { return };
    let store = Arc::new(open(Path::new(&path)).await);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|w| {
            let (store, out) = (store.clone(), out.clone());
            tokio::spawn(async move {
                let stream = StreamId::new(format!("w{w}-{}", std::process::id())).unwrap();
                for batch in 0u64.. {
                    let evs: Vec<_> = (0..BATCH)
                        .map(|i| NewEvent::new("Crash", json!({ "batch": batch, "i": i })))
                        .collect();
                    let last_id = evs[BATCH - 1].id;
                    let expected = ExpectedVersion::Exact(batch * BATCH as u64);
                    let r = store.append(&stream, expected, evs).await.unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ack {stream} {} {last_id}", r.last_version).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

struct Ack {
    stream: String,
    version: u64,
    id: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    Some(Ack {
        stream: parts.next()?.to_owned(),
        version: parts.next()?.parse().ok()?,
        id: parts.next()?.to_owned(),
    })
}

/// Runs one appender, kills it after `kill_after` acknowledgements, returns every ack read.
fn run_and_kill(path: &Path, kill_after: usize) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = Vec::new();
    while acks.len() < kill_after {
        match lines.next() {
            Some(line) => acks.extend(parse_ack(&line.unwrap())),
            None => panic!("the appender exited before being killed"),
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines the child wrote before dying were acknowledged too.
    acks.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
    acks
}

async fn verify(path: &Path, acks: &[Ack]) -> usize {
    let store = open(path).await;
    let mut checked = HashMap::new();
    for ack in acks {
        let stream = StreamId::new(ack.stream.as_str()).unwrap();
        let at = store
            .read_stream(&stream, ReadStream::forward(ack.version, 1))
            .await
            .unwrap();
        assert_eq!(
            at.len(),
            1,
            "acknowledged {} v{} is missing",
            ack.stream,
            ack.version
        );
        assert_eq!(
            at[0].id.to_string(),
            ack.id,
            "{} v{} changed",
            ack.stream,
            ack.version
        );
        checked.insert(ack.stream.clone(), stream);
    }
    let all = store.read_all(ReadAll::after(0, usize::MAX)).await.unwrap();
    let mut by_stream: HashMap<&str, Vec<_>> = HashMap::new();
    for e in &all {
        by_stream.entry(e.stream.as_str()).or_default().push(e);
    }
    for (stream, events) in &by_stream {
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{stream}"
        );
        assert_eq!(
            events.len() % BATCH,
            0,
            "{stream} holds a half-written batch"
        );
        for (k, e) in events.iter().enumerate() {
            assert_eq!(
                e.data["i"],
                json!(k % BATCH),
                "{stream} v{} out of batch",
                e.version
            );
        }
    }
    all.len()
}

fn pseudo_random(seed: u64, lo: usize, hi: usize) -> usize {
    let x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    lo + (x >> 33) as usize % (hi - lo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_append_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    let mut acks = Vec::new();
    for round in 0..ROUNDS {
        let kill_after = pseudo_random(seed ^ round as u64, 200, 4000);
        acks.extend(run_and_kill(&path, kill_after));
        let stored = verify(&path, &acks).await;
        eprintln!(
            "round {round}: killed after {kill_after} acks; {} acknowledged appends, \
             {stored} events stored, all present",
            acks.len()
        );
    }
}
