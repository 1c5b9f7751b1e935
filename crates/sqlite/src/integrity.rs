//! Detecting a damaged database before trusting it.
//!
//! SQLite opens almost anything: a zero-length file is a valid empty database, and a file cut
//! short or with damaged pages opens fine and fails only when a damaged page is read. Started
//! on such a file, the platform would report ready with data silently gone, and keep
//! acknowledging writes into a store that cannot read them back. So an existing file is
//! checked before use (`PRAGMA quick_check`, which reads every page), and the writer stops
//! acknowledging writes once SQLite reports corruption.

use std::path::Path;

use rusqlite::{Connection, ErrorCode};

use crate::db::Error;

/// Where an operator is sent when a database is damaged.
pub(crate) const RECOVERY_HINT: &str = "restore the file from a backup taken with \
    'flotilla backup' (see the recovery section of docs/RELIABILITY.md)";

/// Most problems `quick_check` reports in one message.
const MAX_PROBLEMS: u32 = 5;

/// Whether `e` says the file is damaged or not a database at all.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Refuses an existing file that holds nothing: a new store is one whose file did not exist,
/// and an empty file where a database was is a lost database, not a fresh start.
pub(crate) fn refuse_empty(path: &Path) -> Result<(), Error> {
    let len = std::fs::metadata(path)
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len == 0 {
        return Err(damaged(path, "the file is empty (0 bytes)"));
    }
    Ok(())
}

/// Refuses to create a new store where only the WAL of an old one is left: its transactions
/// belong to a database file that is gone, and a new file would silently discard them.
pub(crate) fn refuse_orphan_wal(path: &Path) -> Result<(), Error> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len > 0 {
        let detail =
            format!("the file is missing but its write-ahead log ({wal_len} bytes) is there");
        return Err(damaged(path, &detail));
    }
    Ok(())
}

/// Reads every page of the database through `conn` and fails naming what is wrong.
pub(crate) fn quick_check(conn: &Connection, path: &Path) -> Result<(), Error> {
    let problems = run_quick_check(conn).map_err(|e| match is_corruption(&e) {
        true => damaged(path, &e.to_string()),
        false => Error::Sqlite(e),
    })?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(damaged(path, &problems.join("; "))),
    }
}

fn run_quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

/// The error for a damaged file at `path`.
pub(crate) fn damaged(path: &Path, detail: &str) -> Error {
    Error::Corrupt(format!(
        "the database {} is damaged ({detail}); {RECOVERY_HINT}",
        path.display()
    ))
}
