//! Power loss against the real `flotilla up` on embedded SQLite: every publish, append and
//! registration it acknowledged survives losing every write that was not fsynced.
//!
//! The platform runs with `tests/powerloss/undo.c` preloaded (compiled here with the
//! machine's C compiler), which logs the pre-image of every write to the data directory until
//! the file is fsynced. Each round loads the bus, the event store and the registry from
//! several threads, SIGKILLs the platform at a random moment, undoes every unsynced write
//! (the files as a power cut would leave them), restarts it normally (its start-up
//! `quick_check` must pass) and counts what was acknowledged but is gone (`lost`) and what is
//! there but was never sent (`unexpected`). A control run with a disk that ignores fsync must
//! lose acknowledged writes, so a model that undoes nothing fails the test.
//!
//! `FLOTILLA_POWERLOSS_ROUNDS` sets the rounds (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod powerloss;
mod support;

use powerloss::{Cut, Undone, shim, undo_unsynced, wait_for_exit};

use support::{Up, http, start_role, stop};

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const SUITE: &str = "power_loss";

/// Writers of each kind running at once.
const WRITERS: usize = 2;

const KINDS: [&str; 3] = ["bus", "store", "registry"];

/// One scenario's directories and what its clients saw, across rounds.
struct Run {
    shim: PathBuf,
    data: PathBuf,
    logs: PathBuf,
    kill_file: PathBuf,
    routes: PathBuf,
    ignore_fsync: bool,
    seen: Seen,
    /// Per earlier round: its bus group and how many events it held when first checked.
    groups: Vec<(String, u64)>,
    /// What the cuts took, over all rounds.
    undone: Undone,
    /// Ids already counted lost or unexpected, per kind.
    reported: BTreeMap<&'static str, BTreeSet<String>>,
}

/// Ids sent and ids acknowledged, per kind (`bus`, `store`, `registry`).
#[derive(Default)]
struct Seen {
    sent: BTreeMap<&'static str, BTreeSet<String>>,
    acked: BTreeMap<&'static str, BTreeSet<String>>,
}

/// Per kind: writes acknowledged, acknowledged ones missing after the power loss, and ones
/// present that were never sent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    acked: usize,
    lost: usize,
    unexpected: usize,
}

impl Run {
    fn new(dir: &Path, shim: PathBuf, ignore_fsync: bool) -> Self {
        let routes = dir.join("routes.toml");
        std::fs::write(&routes, "").unwrap();
        Self {
            shim,
            data: dir.join("data"),
            logs: dir.join("undo"),
            kill_file: dir.join("cut"),
            routes,
            ignore_fsync,
            seen: Seen::default(),
            groups: Vec::new(),
            reported: BTreeMap::new(),
            undone: Undone::default(),
        }
    }

    fn start_shimmed(&self) -> Up {
        let _ = std::fs::remove_dir_all(&self.logs);
        let _ = std::fs::remove_file(&self.kill_file);
        std::fs::create_dir_all(&self.logs).unwrap();
        std::fs::create_dir_all(&self.data).unwrap();
        let data = self.data.canonicalize().unwrap();
        let env = [
            ("LD_PRELOAD", self.shim.to_str().unwrap()),
            ("UNDO_TRACK_DIR", data.to_str().unwrap()),
            ("UNDO_LOG_DIR", self.logs.to_str().unwrap()),
            ("UNDO_KILL_FILE", self.kill_file.to_str().unwrap()),
            (
                "UNDO_IGNORE_FSYNC",
                if self.ignore_fsync { "1" } else { "0" },
            ),
        ];
        start_role("up", &data, &self.routes, &env)
    }

    /// One round: load, SIGKILL, undo the unsynced writes, restart, count.
    fn round(&mut self, n: usize) -> BTreeMap<&'static str, Counts> {
        let mut up = self.start_shimmed();
        let group = format!("pl-r{n}");
        let body = json!({ "pattern": format!("pl.r{n}.>") }).to_string();
        let (status, text) = http(up.api, "PUT", &format!("/api/v1/bus/groups/{group}"), &body);
        assert_eq!(status, 204, "{text}");
        let random = RandomState::new().hash_one(n);
        let cut = Cut {
            delay: Duration::from_millis(random % 1000),
            writes: 1 + (random >> 32) % 400,
            file: self.kill_file.clone(),
        };
        let seen = load_then_kill(&mut up, n, &cut);
        eprintln!(
            "round {n}: killed after write {} from {:?} after the first acknowledgements",
            cut.writes, cut.delay
        );
        for (kind, ids) in seen.sent {
            self.seen.sent.entry(kind).or_default().extend(ids);
        }
        for (kind, ids) in seen.acked {
            self.seen.acked.entry(kind).or_default().extend(ids);
        }
        let undone = undo_unsynced(&self.logs, &self.data);
        let Undone { writes, files } = undone;
        eprintln!("round {n}: {writes} unsynced writes undone, {files} unsynced files removed");
        assert!(
            writes > 0,
            "the cut right after a write left nothing to undo"
        );
        self.undone.writes += writes;
        self.undone.files += files;
        let up = start_role("up", &self.data, &self.routes, &[]);
        let counts = self.count(&up, n, &group);
        stop(up);
        counts
    }

    /// Counts each lost or unexpected id once, in the first round that misses or finds it.
    /// The bus is checked through this round's group; earlier groups must hold what they held.
    fn count(&mut self, up: &Up, n: usize, group: &str) -> BTreeMap<&'static str, Counts> {
        let bus = pull_all(up, group);
        for (g, held) in &self.groups {
            assert_eq!(
                pending(up, g),
                *held,
                "group {g} changed since it was checked"
            );
        }
        self.groups.push((group.to_owned(), bus.len() as u64));
        let mut found = BTreeMap::from([
            ("bus", bus),
            ("store", stored(up)),
            ("registry", registered(up)),
        ]);
        let this_round = format!("pl-r{n}-");
        let mut counts = BTreeMap::new();
        for kind in KINDS {
            let present = found.remove(kind).unwrap();
            let (acked, sent) = (&self.seen.acked[kind], &self.seen.sent[kind]);
            let checked = |id: &&String| kind != "bus" || id.starts_with(&this_round);
            let known = self.reported.entry(kind).or_default();
            let lost: Vec<_> = acked
                .difference(&present)
                .filter(checked)
                .cloned()
                .collect();
            let unexpected: Vec<_> = present.difference(sent).cloned().collect();
            let c = Counts {
                acked: acked
                    .iter()
                    .filter(|id| id.starts_with(&this_round))
                    .count(),
                lost: lost.iter().filter(|id| known.insert((*id).clone())).count(),
                unexpected: unexpected
                    .iter()
                    .filter(|id| known.insert((*id).clone()))
                    .count(),
            };
            counts.insert(kind, c);
        }
        counts
    }
}

/// Runs writers until the cut kills the platform.
fn load_then_kill(up: &mut Up, round: usize, cut: &Cut) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut threads = Vec::new();
    for kind in KINDS {
        for w in 0..WRITERS {
            let (stop, seen, api) = (stop.clone(), seen.clone(), up.api);
            threads.push(std::thread::spawn(move || {
                writer(kind, round, w, api, &stop, &seen)
            }));
        }
    }
    let every_kind_acked = || {
        let s = seen.lock().unwrap();
        KINDS
            .iter()
            .all(|k| s.acked.get(k).is_some_and(|a| !a.is_empty()))
    };
    for _ in 0..600 {
        if every_kind_acked() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        every_kind_acked(),
        "no acknowledgement of every kind in 30 s"
    );
    std::thread::sleep(cut.delay);
    cut.arm();
    let status = wait_for_exit(&mut up.child);
    assert_eq!(
        status.signal(),
        Some(9),
        "the platform ended otherwise: {status}"
    );
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap()
}

/// Sends one kind of write in a loop, recording each id before it is sent and once answered.
fn writer(
    kind: &'static str,
    round: usize,
    w: usize,
    api: u16,
    stop: &AtomicBool,
    seen: &Mutex<Seen>,
) {
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let id = format!("pl-r{round}-w{w}-{i}");
        let (method, path, ctype, body, ok) = match kind {
            "bus" => (
                "POST",
                format!("/api/v1/bus/topics/pl.r{round}.w{w}/events"),
                "application/cloudevents+json",
                json!({"specversion": "1.0", "id": id, "source": "/power-loss", "type": "pl", "data": {"i": i}}),
                200,
            ),
            "store" => (
                "POST",
                format!("/api/v1/streams/pl-w{w}"),
                "application/json",
                json!({"events": [{"type": "Appended", "data": {"id": id}}]}),
                201,
            ),
            _ => (
                "POST",
                "/api/v1/registry/instances".to_owned(),
                "application/json",
                json!({"id": id, "name": "pl", "address": "127.0.0.1", "port": 1 + i % 60000}),
                0,
            ),
        };
        seen.lock()
            .unwrap()
            .sent
            .entry(kind)
            .or_default()
            .insert(id.clone());
        match try_http(api, method, &path, ctype, &body.to_string()) {
            Some(s) if s == ok || (ok == 0 && (s == 200 || s == 201)) => {
                seen.lock()
                    .unwrap()
                    .acked
                    .entry(kind)
                    .or_default()
                    .insert(id);
            }
            Some(s) => panic!("{kind} write {id} answered {s}"),
            None => return, // the platform is gone: this write is unacknowledged
        }
    }
}

/// One request; `None` when the connection fails or closes before a whole status line.
fn try_http(port: u16, method: &str, path: &str, ctype: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut res = Vec::new();
    s.read_to_end(&mut res).ok()?;
    std::str::from_utf8(res.get(9..12)?).ok()?.parse().ok()
}

/// Every event id in `group`, pulled (and kept leased for a day) until none is left.
fn pull_all(up: &Up, group: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let pull = json!({"max": 256, "wait_ms": 0, "lease_ms": 86_400_000}).to_string();
    loop {
        let (status, body) = http(
            up.api,
            "POST",
            &format!("/api/v1/bus/groups/{group}/pull"),
            &pull,
        );
        if status == 404 {
            return ids; // the group's declaration itself was lost
        }
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let batch = v["deliveries"].as_array().unwrap();
        if batch.is_empty() {
            return ids;
        }
        for d in batch {
            ids.insert(d["event"]["id"].as_str().unwrap().to_owned());
        }
    }
}

/// Events routed to `group` and not acked (leased ones included).
fn pending(up: &Up, group: &str) -> u64 {
    let (_, body) = http(up.api, "GET", "/api/v1/bus/groups", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    let groups = v["groups"].as_array().unwrap();
    let g = groups.iter().find(|g| g["spec"]["name"] == group);
    g.map_or(0, |g| g["pending"].as_u64().unwrap())
}

/// Every id appended to the writers' streams.
fn stored(up: &Up) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for w in 0..WRITERS {
        let mut from = 1;
        loop {
            let path = format!("/api/v1/streams/pl-w{w}?from={from}&limit=1000");
            let (status, body) = http(up.api, "GET", &path, "");
            if status == 404 {
                break;
            }
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            for e in v["events"].as_array().unwrap() {
                ids.insert(e["data"]["id"].as_str().unwrap().to_owned());
            }
            match v["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
    }
    ids
}

/// Every instance of the service `pl` in the catalog, whatever its health.
fn registered(up: &Up) -> BTreeSet<String> {
    let (status, body) = http(up.api, "GET", "/api/v1/registry/services/pl?status=any", "");
    if status == 404 {
        return BTreeSet::new();
    }
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let instances = v["instances"].as_array().unwrap();
    instances
        .iter()
        .map(|i| {
            i["id"]
                .as_str()
                .or(i["instance"]["id"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn rounds() -> usize {
    std::env::var("FLOTILLA_POWERLOSS_ROUNDS")
        .map_or(20, |v| v.parse().expect("FLOTILLA_POWERLOSS_ROUNDS"))
}

/// Runs `rounds` rounds and returns the totals per kind, printing each round's counts.
fn run(ignore_fsync: bool, rounds: usize) -> Option<BTreeMap<&'static str, Counts>> {
    let dir = tempfile::tempdir().unwrap();
    let shim = shim(SUITE, dir.path())?;
    let mut run = Run::new(dir.path(), shim, ignore_fsync);
    // The store is created by a normal start and stop, as an operator's first `flotilla up`
    // would: a power cut before the new file's first sync is not what is measured here.
    let up = start_role("up", &run.data, &run.routes, &[]);
    // A SIGTERM in the instant after `service ready` can still find no handler installed.
    assert_eq!(http(up.api, "GET", "/api/v1/bus/groups", "").0, 200);
    stop(up);
    let mut totals: BTreeMap<&'static str, Counts> = BTreeMap::new();
    for n in 0..rounds {
        let counts = run.round(n);
        eprintln!("round {n}: {counts:?}");
        for (kind, c) in counts {
            let t = totals.entry(kind).or_default();
            t.lost += c.lost;
            t.unexpected += c.unexpected;
            t.acked += c.acked;
        }
    }
    let label = if ignore_fsync {
        "fsync ignored"
    } else {
        "synchronous=FULL"
    };
    let Undone { writes, files } = run.undone;
    eprintln!(
        "power loss, {label}, {rounds} rounds, {writes} unsynced writes undone, \
         {files} unsynced files removed: {totals:?}"
    );
    Some(totals)
}

#[test]
fn every_acknowledged_write_survives_losing_every_unsynced_write() {
    let Some(totals) = run(false, rounds()) else {
        return;
    };
    for (kind, c) in totals {
        assert!(c.acked > 0, "{kind}: nothing was acknowledged");
        assert_eq!((c.lost, c.unexpected), (0, 0), "{kind}: {c:?}");
    }
}

#[test]
fn a_disk_that_ignores_fsync_loses_acknowledged_writes() {
    let Some(totals) = run(true, 2) else { return };
    for (kind, c) in totals {
        assert!(c.lost > 0, "{kind}: the model lost nothing: {c:?}");
        assert_eq!(c.unexpected, 0, "{kind}: {c:?}");
    }
}
