//! The bus's tables.
//!
//! An event is stored once (`bus_messages`) and gets one row per matching group in
//! `bus_deliveries`, which carries the group's view: when it is next deliverable
//! (`visible_at`, covering delayed publish, nack delays and lease ends alike), how many times
//! it was delivered, and the current lease. A delivery row is deleted on ack or dead-letter;
//! a message row when its last delivery row goes. Times are milliseconds since the Unix epoch.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_groups (
    name    TEXT PRIMARY KEY,
    pattern TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_messages (
    seq          INTEGER PRIMARY KEY,
    topic        TEXT NOT NULL,
    event        TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_deliveries (
    grp        TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    okey       TEXT,
    visible_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    lease      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_deliveries_by_key ON bus_deliveries (grp, okey, seq)
    WHERE okey IS NOT NULL;
CREATE INDEX IF NOT EXISTS bus_deliveries_by_seq ON bus_deliveries (seq);
CREATE TABLE IF NOT EXISTS bus_dedupe (
    source TEXT NOT NULL,
    id     TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_dedupe_by_time ON bus_dedupe (at);
CREATE TABLE IF NOT EXISTS bus_topics (
    name      TEXT PRIMARY KEY,
    published INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_dlq (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    grp              TEXT NOT NULL,
    topic            TEXT NOT NULL,
    event            TEXT NOT NULL,
    okey             TEXT,
    reason           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT NOT NULL,
    published_at     INTEGER NOT NULL,
    dead_lettered_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_dlq_by_group ON bus_dlq (grp, id);
";
