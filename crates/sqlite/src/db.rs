//! Opening the database: pragmas, the writer, the read pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::writer::Writer;
use crate::{backup, integrity};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused the operation.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the database was closed, or a write panicked).
    #[error("the storage writer has stopped")]
    WriterStopped,
    /// The batch's transaction did not commit, so this write is not durable.
    #[error("commit failed, the write was not stored: {0}")]
    CommitFailed(String),
    /// The database file is damaged (or is not a database). At open it was not used; while
    /// running, every write since is refused rather than acknowledged. The message says how
    /// to recover.
    #[error("{0}")]
    Corrupt(String),
    /// A backup could not be written; nothing was left at `path`.
    #[error("cannot back up to {path}: {reason}")]
    Backup {
        /// The destination asked for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Opening the data directory failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How durable a write is when its caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: the transaction is on disk (fsynced) before anyone is answered.
    #[default]
    Full,
    /// `synchronous=NORMAL`: an OS crash or power loss may lose the last transactions (a
    /// process crash does not). An explicit opt-in for throughput.
    Relaxed,
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database file.
    pub path: PathBuf,
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Most writes batched into one transaction.
    pub max_batch: usize,
    /// Longest the writer waits, after a batch, for as many writes as that batch held before
    /// it begins the next transaction (see [`Writer`]); zero takes only what is waiting.
    pub gather_wait: Duration,
    /// Read connections kept open.
    pub readers: usize,
    /// Whether writes of one kind gathered into a batch (publishes, appends) run together,
    /// sharing statements and savepoints (the default), or each alone in its own savepoint as
    /// any other write does. Answers are the same either way; the switch is for measuring.
    pub merge_writes: bool,
}

impl Options {
    /// Defaults for a database at `path`: full durability, batches of up to 1,024 writes
    /// gathered for at most 1 ms, four read connections.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::Full,
            max_batch: 1024,
            gather_wait: Duration::from_millis(1),
            readers: 4,
            merge_writes: true,
        }
    }
}

/// An open database: the writer and the read pool.
#[derive(Debug, Clone)]
pub struct Database {
    writer: Writer,
    reads: ReadPool,
}

impl Database {
    /// Opens the database, sets WAL mode and durability, and starts the writer thread.
    ///
    /// A file that does not exist is created as a new, empty store. An existing file is
    /// checked first (`PRAGMA quick_check`, which reads every page): an empty, truncated or
    /// damaged one is refused with [`Error::Corrupt`] saying how to recover, never silently
    /// treated as a fresh store.
    pub fn open(options: Options) -> Result<Self, Error> {
        let path = &options.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let existed = path.exists();
        match existed {
            true => integrity::refuse_empty(path)?,
            false => integrity::refuse_orphan_wal(path)?,
        }
        let conn = Connection::open(path)?;
        let corrupt = |e: rusqlite::Error| match integrity::is_corruption(&e) {
            true => integrity::damaged(path, &e.to_string()),
            false => Error::Sqlite(e),
        };
        configure(&conn, options.durability).map_err(corrupt)?;
        if existed {
            let started = std::time::Instant::now();
            integrity::quick_check(&conn, path)?;
            tracing::debug!(path = %path.display(), elapsed = ?started.elapsed(), "database checked");
        }
        let writer = Writer::start(
            conn,
            options.max_batch,
            options.gather_wait,
            options.merge_writes,
        )?;
        let reads = ReadPool::new(path, options.readers.max(1));
        Ok(Self { writer, reads })
    }

    /// Moves every committed transaction from the WAL into the database file and empties the
    /// WAL (`wal_checkpoint(TRUNCATE)`), so the file alone holds everything. Called on a clean
    /// shutdown; returns `false` when a reader kept part of the WAL from being copied.
    pub async fn checkpoint(&self) -> Result<bool, Error> {
        self.writer.checkpoint().await
    }

    /// Writes a complete, checked copy of the database to `dest` (which must not exist),
    /// while it keeps serving. The copy is written under a temporary name and linked to `dest`
    /// only once whole and checked, so a crash mid-way leaves no partial file at `dest`.
    pub async fn backup(&self, dest: impl Into<PathBuf>) -> Result<(), Error> {
        let (source, dest) = (self.reads.path.clone(), dest.into());
        tokio::task::spawn_blocking(move || backup::backup(&source, &dest))
            .await
            .map_err(|_| Error::Backup {
                path: PathBuf::new(),
                reason: "the backup task panicked".into(),
            })?
    }

    /// The writer: every mutation goes through it.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The read pool.
    pub fn reads(&self) -> &ReadPool {
        &self.reads
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each write runs in its own savepoint, whose rollback journal is a temporary file: keep
    // it in memory (it spilled to a file; in memory it costs half as much under load).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Read-only connections, opened lazily and reused.
#[derive(Debug, Clone)]
pub struct ReadPool {
    path: Arc<Path>,
    idle: Arc<Mutex<Vec<Connection>>>,
    max_idle: usize,
}

impl ReadPool {
    fn new(path: &Path, max_idle: usize) -> Self {
        Self {
            path: path.into(),
            idle: Arc::default(),
            max_idle,
        }
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.read_blocking(f))
            .await
            .map_err(|_| Error::WriterStopped)?
    }

    /// Runs `f` on a read connection on the current thread.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let conn = self.checkout()?;
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }

    fn checkout(&self) -> Result<Connection, Error> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&*self.path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }
}
