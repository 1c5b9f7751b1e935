//! The event store's tables, in the configured schema.

/// DDL, with `{s}` standing for the schema name (validated as a plain identifier).
const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.es_streams (
    stream  text PRIMARY KEY,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);
CREATE SEQUENCE IF NOT EXISTS {s}.es_position;
CREATE TABLE IF NOT EXISTS {s}.es_events (
    position    bigint PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    stream      text NOT NULL,
    version     bigint NOT NULL,
    category    text NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    metadata    jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS es_events_category ON {s}.es_events (category, position);
CREATE INDEX IF NOT EXISTS es_events_type ON {s}.es_events (type, position);
CREATE TABLE IF NOT EXISTS {s}.es_snapshots (
    stream  text PRIMARY KEY,
    version bigint NOT NULL,
    state   jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.es_checkpoints (
    subscriber text PRIMARY KEY,
    position   bigint NOT NULL
);
";

/// The DDL for `schema`.
pub(super) fn ddl(schema: &str) -> String {
    DDL.replace("{s}", schema)
}

/// The advisory-lock key that orders appends in `schema`: a stable hash of its name, so
/// stores in different schemas do not serialize on each other.
pub(super) fn lock_key(schema: &str) -> i64 {
    // FNV-1a: stable across processes and releases (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flotilla.eventstore.".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}
