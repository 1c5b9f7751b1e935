//! The embedded bus library under power loss, at a publish rate the HTTP test does not reach:
//! eight publishers of one event per call, cut right after a random write, every unsynced
//! write undone. With `Durability::Full` (what `flotilla up` uses) no acknowledged publish
//! is lost; with `Durability::Relaxed` (`synchronous=NORMAL`, which `flotilla up` does not
//! offer) acknowledged publishes are lost while the database stays whole — the control, and
//! the figure that stands beside a broker whose default acknowledges before fsync.
//!
//! The test binary re-runs itself as the publisher (`publisher`, active only when
//! `FLOTILLA_POWERLOSS_DB` is set), under the `undo.c` shim, printing `pub <id>` once each
//! publish returned Ok.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod powerloss;

use powerloss::{Cut, shim, undo_unsynced, wait_for_exit};

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{Backend, GroupName, GroupSpec, Outgoing};
use flotilla_core::{CloudEvent, TopicName, TopicPattern};
use flotilla_sqlite::bus::{BusOptions, SqliteBus};
use flotilla_sqlite::{Database, Durability, Options};

const ENV_DB: &str = "FLOTILLA_POWERLOSS_DB";
/// `relaxed` for `Durability::Relaxed`; anything else is `Full`.
const ENV_DURABILITY: &str = "FLOTILLA_POWERLOSS_DURABILITY";
const PUBLISHERS: usize = 8;
const ROUNDS: usize = 5;

async fn open(path: &Path, durability: Durability) -> Arc<SqliteBus> {
    let mut options = Options::new(path);
    options.durability = durability;
    let bus = SqliteBus::open(Database::open(options).unwrap(), BusOptions::default()).unwrap();
    let spec = GroupSpec {
        name: GroupName::new("pl").unwrap(),
        pattern: TopicPattern::new("pl.*").unwrap(),
    };
    bus.declare_group(&spec).await.unwrap();
    Arc::new(bus)
}

/// The publisher process (does nothing unless the parent set `FLOTILLA_POWERLOSS_DB`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher() {
    let Ok(path) = std::env::var(ENV_DB) else {
        return;
    };
    let durability = match std::env::var(ENV_DURABILITY).as_deref() {
        Ok("relaxed") => Durability::Relaxed,
        _ => Durability::Full,
    };
    let bus = open(Path::new(&path), durability).await;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // End the harness's `test publisher ... ` line so each record has its own.
    writeln!(out.lock().unwrap()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..PUBLISHERS {
        let (bus, out) = (bus.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let topic = TopicName::new("pl.e").unwrap();
            for i in 0u64.. {
                let mut e = CloudEvent::new("/power-loss", "pl.e");
                e.id = format!("{}-{w}-{i}", std::process::id());
                let id = e.id.clone();
                bus.publish(vec![Outgoing::new(topic.clone(), e)])
                    .await
                    .unwrap();
                let mut o = out.lock().unwrap();
                writeln!(o, "pub {id}").unwrap();
                o.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// One round: publish under the shim, cut after a random write, undo; the acknowledged ids.
fn round(shim: &Path, dir: &Path, durability: Durability, n: usize) -> BTreeSet<String> {
    let (data, logs, file) = (dir.join("data"), dir.join("undo"), dir.join("cut"));
    let _ = std::fs::remove_dir_all(&logs);
    let _ = std::fs::remove_file(&file);
    std::fs::create_dir_all(&logs).unwrap();
    let random = RandomState::new().hash_one(n);
    let cut = Cut {
        delay: Duration::from_millis(200 + random % 800),
        writes: 1 + (random >> 32) % 400,
        file,
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["publisher", "--exact", "--nocapture"])
        .env(ENV_DB, data.join("flotilla.db"))
        .env(
            ENV_DURABILITY,
            match durability {
                Durability::Relaxed => "relaxed",
                _ => "full",
            },
        )
        .env("LD_PRELOAD", shim)
        .env("UNDO_TRACK_DIR", &data)
        .env("UNDO_LOG_DIR", &logs)
        .env("UNDO_KILL_FILE", &cut.file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let acked = lines.filter_map(|l| l.strip_prefix("pub ").map(str::to_owned));
        acked.collect::<BTreeSet<_>>()
    });
    std::thread::sleep(cut.delay);
    cut.arm();
    let status = wait_for_exit(&mut child);
    assert_eq!(
        status.signal(),
        Some(9),
        "the publisher ended otherwise: {status}"
    );
    let acked = reader.join().unwrap();
    let undone = undo_unsynced(&logs, &data);
    eprintln!("round {n}: {} acknowledged, {undone:?}", acked.len());
    assert!(
        undone.writes > 0,
        "the cut right after a write left nothing to undo"
    );
    acked
}

/// Every event id left in the group, after the full integrity check of opening the file.
async fn present(path: &Path) -> BTreeSet<String> {
    let bus = open(path, Durability::Full).await;
    let group = GroupName::new("pl").unwrap();
    let mut ids = BTreeSet::new();
    loop {
        let lease = Duration::from_secs(86_400);
        let batch = bus
            .receive(&group, 256, lease, Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            return ids;
        }
        ids.extend(batch.into_iter().map(|d| d.event.id));
    }
}

/// Runs the rounds; (acknowledged, lost) over all of them.
async fn run(durability: Durability) -> Option<(usize, usize)> {
    let dir = tempfile::tempdir().unwrap();
    let shim = shim("power_loss_bus", dir.path())?;
    // The store exists, synced, before the first cut, as after an operator's first start.
    let db = dir.path().join("data/flotilla.db");
    drop(open(&db, Durability::Full).await);
    let (mut acked, mut lost) = (0, 0);
    for n in 0..ROUNDS {
        let acked_here = tokio::task::spawn_blocking({
            let (shim, dir) = (shim.clone(), dir.path().to_owned());
            move || round(&shim, &dir, durability, n)
        })
        .await
        .unwrap();
        // Consumed here, so each round counts only its own publishes.
        let found = present(&db).await;
        let missing = acked_here.difference(&found).count();
        eprintln!(
            "round {n}: {missing} of {} acknowledged publishes lost",
            acked_here.len()
        );
        acked += acked_here.len();
        lost += missing;
    }
    eprintln!("power loss, {durability:?}, {ROUNDS} rounds: {acked} acknowledged, {lost} lost");
    Some((acked, lost))
}

#[tokio::test]
async fn full_durability_loses_no_acknowledged_publish_on_power_loss() {
    let Some((acked, lost)) = run(Durability::Full).await else {
        return;
    };
    assert!(acked > 0, "nothing was acknowledged");
    assert_eq!(lost, 0, "{lost} of {acked} acknowledged publishes lost");
}

#[tokio::test]
async fn relaxed_durability_loses_acknowledged_publishes_on_power_loss() {
    let Some((_, lost)) = run(Durability::Relaxed).await else {
        return;
    };
    assert!(
        lost > 0,
        "relaxed durability lost nothing: the model undid nothing"
    );
}
