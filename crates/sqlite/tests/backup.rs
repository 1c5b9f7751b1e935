//! Online backups: whole and checked while writes go on, never a partial file at the
//! destination, never an overwrite.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_sqlite::{Database, Error, Options};

fn count(db: &Database) -> i64 {
    db.reads()
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_run_is_whole_and_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(Options::new(dir.path().join("flotilla.db"))).unwrap();
    db.writer()
        .write(|c| Ok::<_, Error>(c.execute_batch("CREATE TABLE t (v BLOB NOT NULL)")?))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                db.writer()
                    .write(|c| {
                        Ok::<_, Error>(c.execute("INSERT INTO t VALUES (randomblob(2000))", [])?)
                    })
                    .await
                    .unwrap();
                written += 1;
            }
            written
        })
    };
    // Some writes land before the backup starts, more while it runs.
    while count(&db) < 200 {
        tokio::task::yield_now().await;
    }
    let dest = dir.path().join("copy.db");
    db.backup(&dest).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let copy = Database::open(Options::new(&dest)).unwrap();
    let copied = count(&copy);
    assert!(
        copied >= 200 && copied as u64 <= written,
        "{copied} of {written}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_backup_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(Options::new(dir.path().join("flotilla.db"))).unwrap();
    let dest = dir.path().join("taken.db");
    std::fs::write(&dest, b"precious").unwrap();
    match db.backup(&dest).await {
        Err(Error::Backup { path, reason }) => {
            assert_eq!(path, dest);
            assert!(reason.contains("exists"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    let nowhere = dir.path().join("no-such-dir").join("copy.db");
    match db.backup(&nowhere).await {
        Err(Error::Backup { reason, .. }) => assert!(reason.contains("directory"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
