//! The event store's tables.

use rusqlite::Connection;

/// Creates the tables if they are missing. Positions come from `AUTOINCREMENT` so that a
/// position is never handed out twice, even after truncation removed the newest events.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS es_streams (
    stream   TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS es_events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          BLOB NOT NULL UNIQUE,
    stream      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    category    TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS es_events_category ON es_events (category, position);
CREATE INDEX IF NOT EXISTS es_events_type ON es_events (type, position);
CREATE TABLE IF NOT EXISTS es_snapshots (
    stream  TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS es_checkpoints (
    subscriber TEXT PRIMARY KEY,
    position   INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The highest position ever handed out (0 for an empty store).
pub(super) fn last_position(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'es_events'",
            [],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(seq.map_or(0, |s| s.max(0) as u64))
}
