//! The embedded database's files as an operator handles them: whole after a clean shutdown,
//! backed up while the platform runs, and a backup killed midway leaves nothing half-written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Up, cli, flotilla, http, start_role, stop};

use std::path::Path;
use std::time::Duration;

use flotilla_sqlite::{Database, Error, Options};

fn platform(dir: &Path, data: &Path) -> Up {
    let routes = dir.join("routes.toml");
    std::fs::write(&routes, "").unwrap();
    start_role("up", data, &routes, &[])
}

fn append(up: &Up, stream: &str, n: u32) {
    let body = format!(r#"{{"events":[{{"type":"Placed","data":{{"n":{n}}}}}]}}"#);
    let (status, text) = http(up.api, "POST", &format!("/api/v1/streams/{stream}"), &body);
    assert_eq!(status, 201, "{text}");
}

/// Events of the event store in the database at `path`, after a full integrity check.
fn events_in(path: &Path) -> i64 {
    let db = Database::open(Options::new(path)).unwrap();
    db.reads()
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM es_events", [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn after_a_clean_shutdown_the_database_file_alone_holds_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = platform(dir.path(), &data);
    for n in 0..20 {
        append(&up, "order-1", n);
    }
    stop(up);
    let wal = std::fs::metadata(data.join("flotilla.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was checkpointed into flotilla.db");
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(data.join("flotilla.db"), alone.path().join("flotilla.db")).unwrap();
    assert_eq!(events_in(&alone.path().join("flotilla.db")), 20);
}

#[test]
fn a_backup_of_a_running_platform_under_writes_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let up = platform(dir.path(), &dir.path().join("data"));
    let api = up.api;
    let writing = std::thread::spawn(move || {
        let body = r#"{"events":[{"type":"Placed","data":{}}]}"#;
        (0..300).all(|_| http(api, "POST", "/api/v1/streams/busy", body).0 == 201)
    });
    append(&up, "order-1", 1);
    let dest = dir.path().join("backup.db");
    let out = cli(&up, &["backup", dest.to_str().unwrap()]);
    assert!(out.contains("backed up to"), "{out}");
    assert!(
        writing.join().unwrap(),
        "every write during the backup succeeded"
    );
    assert!(events_in(&dest) >= 1);
    let again = flotilla()
        .args(["backup", dest.to_str().unwrap()])
        .args(["--url", &format!("http://127.0.0.1:{api}")])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing file is never overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let (status, body) = http(api, "POST", "/api/v1/admin/backup", r#"{"path":"rel.db"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("rel.db") && body.contains("absolute"),
        "{body}"
    );
}

/// A database big enough that copying it takes a while.
fn big_database(path: &Path) {
    let db = Database::open(Options::new(path)).unwrap();
    db.writer()
        .write_blocking(|c| {
            c.execute_batch(
                "CREATE TABLE filler (b BLOB NOT NULL);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                 INSERT INTO filler SELECT randomblob(4000) FROM n;",
            )
            .map_err(Error::from)
        })
        .unwrap();
}

#[test]
fn a_backup_killed_midway_leaves_no_file_at_the_destination_and_the_source_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    big_database(&data.join("flotilla.db"));
    let dest = dir.path().join("backup.db");
    let partial = dir.path().join(".backup.db.partial");
    let mut child = flotilla()
        .args(["backup", dest.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .spawn()
        .unwrap();
    // Kill it as soon as the copy is being written.
    let mut seen = false;
    for _ in 0..60_000 {
        if partial.exists() {
            seen = true;
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen, "the copy never started");
    support::send_signal(child.id(), "-KILL");
    child.wait().unwrap();
    assert!(!dest.exists(), "no half-written file at the destination");
    // The source opens and passes its integrity check.
    let source = Database::open(Options::new(data.join("flotilla.db"))).unwrap();
    let rows: i64 = source
        .reads()
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM filler", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(rows, 20_000);
    // The next backup replaces the leftover and completes.
    let out = flotilla()
        .args(["backup", dest.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    support::assert_success(&out);
    assert!(!partial.exists());
}
