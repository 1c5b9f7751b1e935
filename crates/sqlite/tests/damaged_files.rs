//! A damaged database is refused at open with a message saying how to recover, never used
//! as if it were whole or fresh.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use flotilla_sqlite::{Database, Error, Options};

/// A database of `rows` rows spread over many pages, checkpointed so the file alone holds
/// them, and closed.
async fn filled(dir: &Path, rows: i64) -> PathBuf {
    let path = dir.join("flotilla.db");
    let db = Database::open(Options::new(&path)).unwrap();
    db.writer()
        .write(move |c| {
            c.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY, pad BLOB NOT NULL)")?;
            c.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO t SELECT i, randomblob(500) FROM n",
                [rows],
            )
            .map_err(Error::from)
        })
        .await
        .unwrap();
    assert!(
        db.checkpoint().await.unwrap(),
        "the WAL was fully checkpointed"
    );
    path
}

fn refused(path: &Path) -> String {
    match Database::open(Options::new(path)) {
        Err(Error::Corrupt(msg)) => msg,
        Err(other) => panic!("expected Error::Corrupt, got {other}"),
        Ok(_) => panic!("a damaged database was opened"),
    }
}

#[test]
fn a_missing_file_is_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    Database::open(Options::new(dir.path().join("new.db"))).unwrap();
}

#[test]
fn an_existing_empty_file_is_refused_not_taken_for_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    std::fs::File::create(&path).unwrap();
    let msg = refused(&path);
    assert!(
        msg.contains("empty") && msg.contains("flotilla backup"),
        "{msg}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
}

#[tokio::test]
async fn a_file_cut_in_half_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 2000).await;
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    let msg = refused(&path);
    assert!(msg.contains("damaged"), "{msg}");
}

#[tokio::test]
async fn damaged_pages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 2000).await;
    let mut bytes = std::fs::read(&path).unwrap();
    // Scribble over a run of pages in the middle of the table's b-tree, header untouched.
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 3 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let msg = refused(&path);
    assert!(
        msg.contains("damaged") && msg.contains("RELIABILITY"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_whole_database_opens_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 100).await;
    let db = Database::open(Options::new(&path)).unwrap();
    let n: i64 = db
        .reads()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 100);
}

#[tokio::test]
async fn after_a_checkpoint_the_database_file_alone_holds_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 300).await;
    let wal = dir.path().join("flotilla.db-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("flotilla.db");
    std::fs::copy(&path, &copy).unwrap();
    let db = Database::open(Options::new(&copy)).unwrap();
    let n: i64 = db
        .reads()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 300);
}

#[tokio::test]
async fn a_write_ahead_log_without_its_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(dir.path(), 10).await;
    // A WAL with a transaction in it, as a crash leaves it.
    let db = Database::open(Options::new(&path)).unwrap();
    db.writer()
        .write(|c| Ok::<_, Error>(c.execute("INSERT INTO t VALUES (1000, x'00')", [])?))
        .await
        .unwrap();
    // The log alone, in a directory of its own (the database file is gone).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("flotilla.db-wal"),
        other.path().join("flotilla.db-wal"),
    )
    .unwrap();
    drop(db);
    let path = other.path().join("flotilla.db");
    let msg = refused(&path);
    assert!(msg.contains("write-ahead log"), "{msg}");
    assert!(
        !path.exists(),
        "no new database was created over the old log"
    );
}
