//! Online backup: a whole, checked copy of the database, taken while it serves.
//!
//! `VACUUM INTO` on a read-only connection copies one consistent snapshot (the WAL's committed
//! transactions included) without holding up the writer: in WAL mode readers and the writer do
//! not block each other. The copy is written under a temporary name beside the destination,
//! flushed, checked, and only then linked to the destination name, so a crash or a kill at
//! any moment leaves either no file at the destination or a complete one.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::db::Error;
use crate::integrity;

/// Copies the database at `source` to `dest`, which must not exist yet.
pub(crate) fn backup(source: &Path, dest: &Path) -> Result<(), Error> {
    let refused = |reason: &str| Error::Backup {
        path: dest.to_path_buf(),
        reason: reason.to_owned(),
    };
    if dest.exists() {
        return Err(refused("it already exists; choose a new name"));
    }
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else {
        return Err(refused("it does not name a file"));
    };
    if !dest
        .parent()
        .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
    {
        return Err(refused("its directory does not exist"));
    }
    let partial = dest.with_file_name(format!(".{name}.partial"));
    // A leftover from a backup that was killed: never a valid copy, safe to replace.
    remove_if_present(&partial)?;
    let written = write_copy(source, &partial).and_then(|()| {
        let copy = Connection::open_with_flags(&partial, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        integrity::quick_check(&copy, &partial)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    // A hard link cannot replace an existing file, unlike a rename: a destination created
    // meanwhile is refused rather than overwritten.
    let linked = std::fs::hard_link(&partial, dest);
    let _ = std::fs::remove_file(&partial);
    linked.map_err(|e| refused(&e.to_string()))?;
    sync_dir(dest)
}

/// Writes a consistent copy of `source` to `partial` and flushes it to disk.
fn write_copy(source: &Path, partial: &Path) -> Result<(), Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(source, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let target = partial.to_str().ok_or_else(|| Error::Backup {
        path: partial.to_path_buf(),
        reason: "the path is not valid UTF-8".into(),
    })?;
    conn.execute("VACUUM INTO ?1", [target])?;
    let file = std::fs::File::open(partial).map_err(|e| io(partial, e))?;
    file.sync_all().map_err(|e| io(partial, e))
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

/// Makes the new directory entry durable, so the backup survives a power loss right after.
fn sync_dir(dest: &Path) -> Result<(), Error> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    #[cfg(unix)]
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(&dir, e))?;
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Open {
        path: path.to_path_buf(),
        source,
    }
}
