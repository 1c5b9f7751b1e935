//! The event store's tables, in the configured schema, and the steps that upgrade a schema
//! created by an earlier release.
//!
//! Opening a store runs [`ddl`] in one transaction, under one advisory lock per schema: it
//! creates what is missing, retires the sequence of the release before positions came from
//! transaction ids, then applies each versioned step above the version recorded in `es_meta`
//! (`schema_version`; a schema without one is at version 2) and records [`SCHEMA_VERSION`]. A
//! schema recorded at a higher version than this release knows is refused.

/// Low bits of a position that number the events within one transaction; the high bits are
/// the transaction's id (`position = xid << TX_BITS | ordinal`). See the module docs.
pub(super) const TX_BITS: u32 = 20;
/// `1 << TX_BITS`, as SQL and Rust both need it.
pub(super) const TX_SPAN: i64 = 1 << TX_BITS;
/// Most events one transaction can append (ordinal 0 is never used).
pub(super) const MAX_PER_TX: i64 = TX_SPAN - 1;
/// The schema version this release creates and upgrades to (see [`DDL`]'s versioned steps).
///
/// 2: positions from transaction ids, the stream row written by every append. 3: the stream
/// row written when a stream is created, deleted or truncated; its version is a floor.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// DDL, with `{s}` standing for the schema name (validated as a plain identifier),
/// `{lock}` for [`legacy_lock_key`] and `{version}` for [`SCHEMA_VERSION`].
const DDL: &str = "
SELECT pg_advisory_xact_lock({lock});
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.es_streams (
    stream  text PRIMARY KEY,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);
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
DO $retire$
DECLARE last bigint;
BEGIN
    IF to_regclass('{s}.es_position') IS NOT NULL THEN
        SELECT greatest(last_value, 1) INTO last FROM {s}.es_position;
        PERFORM setval('{s}.es_position', last, true);
        EXECUTE format('ALTER SEQUENCE {s}.es_position MAXVALUE %s', last);
        EXECUTE 'COMMENT ON SEQUENCE {s}.es_position IS '
            || quote_literal('retired: positions come from transaction ids; nextval fails');
    END IF;
END
$retire$;
CREATE TABLE IF NOT EXISTS {s}.es_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
-- Versioned steps. A schema without a recorded version has the layout of version 2 by now
-- (created just above, or by the release that added `es_append`, or upgraded from the
-- sequence release by the step above).
DO $migrate$
DECLARE v bigint;
BEGIN
    SELECT value INTO v FROM {s}.es_meta WHERE key = 'schema_version';
    v := coalesce(v, 2);
    IF v > {version} THEN
        RAISE EXCEPTION 'event store schema {s} has version %, newer than this release''s %',
            v, {version} USING ERRCODE = 'feature_not_supported';
    END IF;
    IF v < 3 THEN
        -- 3: appends write the stream row only when they create the stream; a stream's
        -- version is the greater of the row's (a floor: exact when version 2 wrote it, set
        -- again by truncation) and its last event's. No row changes. The function's result
        -- gains a column, so it is dropped first; that also makes the previous release's DDL,
        -- which replaces it with the old result, fail: a process of that release no longer
        -- opens the schema.
        DROP FUNCTION IF EXISTS {s}.es_append(
            text, text, bigint, smallint, bigint, uuid[], text[], jsonb[], jsonb[]);
    END IF;
    INSERT INTO {s}.es_meta (key, value) VALUES ('schema_version', {version})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END
$migrate$;
-- The whole of an ordinary append in one call (see `append_once` in `store_impl.rs`).
-- It writes only when the stream is live and the expected version admits the stream's
-- version; otherwise it writes nothing and returns written = false, and the caller decides
-- the answer on the general path. An id already stored fails the insert (unique_violation),
-- which sends the caller to the general path too. `p_kind`: 0 any, 1 no stream, 2 stream
-- exists, 3 exact `p_expected` (the rule of `ExpectedVersion::admits`). `created`: this
-- append created the stream (and its row).
CREATE OR REPLACE FUNCTION {s}.es_append(
    p_stream text, p_category text, p_seed bigint, p_kind smallint, p_expected bigint,
    p_ids uuid[], p_types text[], p_data jsonb[], p_meta jsonb[],
    OUT written boolean, OUT first_version bigint, OUT last_position bigint,
    OUT created boolean)
LANGUAGE plpgsql AS $append$
DECLARE
    current bigint;
    gone boolean;
    admitted boolean;
    base bigint;
    n bigint := cardinality(p_ids);
BEGIN
    written := false;
    created := false;
    -- The stream's lock first, then the transaction id: the id is then above that of every
    -- earlier append to the stream, which committed before the lock was free.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, p_seed));
    SELECT nullif(greatest(s.version, (SELECT e.version FROM {s}.es_events e
            WHERE e.stream = p_stream ORDER BY e.version DESC LIMIT 1)), 0), s.deleted
        INTO current, gone FROM {s}.es_streams s WHERE s.stream = p_stream;
    IF gone THEN
        RETURN;
    END IF;
    -- (An assignment: an IF condition may not hold a CASE, whose THEN would end it.)
    admitted := CASE p_kind
        WHEN 0 THEN true
        WHEN 1 THEN current IS NULL
        WHEN 2 THEN current IS NOT NULL
        ELSE CASE WHEN current IS NULL THEN p_expected = 0 ELSE current = p_expected END
    END;
    IF NOT admitted THEN
        RETURN;
    END IF;
    base := pg_current_xact_id()::text::bigint * {span};
    first_version := coalesce(current, 0) + 1;
    INSERT INTO {s}.es_events (position, id, stream, version, category, type, data, metadata)
    SELECT base + x.ord, x.i, p_stream, first_version + x.ord - 1, p_category, x.t, x.d, x.m
    FROM unnest(p_ids, p_types, p_data, p_meta) WITH ORDINALITY AS x(i, t, d, m, ord);
    IF current IS NULL THEN
        INSERT INTO {s}.es_streams (stream, version) VALUES (p_stream, first_version + n - 1)
        ON CONFLICT (stream) DO NOTHING;
        created := true;
    END IF;
    written := true;
    last_position := base + n;
END
$append$;
";

/// The DDL for `schema`. It runs as one implicit transaction.
///
/// Upgrading a schema made by a release that drew positions from the sequence `es_position`
/// under a schema-wide advisory lock: the DDL first takes that same lock, so it waits for
/// appends of the old release in flight (their small positions commit below every position
/// this release draws), then caps the sequence at its current value. An old process still
/// running afterwards fails its next append at `nextval` instead of writing a position a
/// reader may already have passed. Old rows need no change: their positions are far below
/// `xid << TX_BITS` of any transaction that can still run.
pub(super) fn ddl(schema: &str) -> String {
    DDL.replace("{s}", schema)
        .replace("{lock}", &legacy_lock_key(schema).to_string())
        .replace("{span}", &TX_SPAN.to_string())
        .replace("{version}", &SCHEMA_VERSION.to_string())
}

/// The advisory-lock key every append of the previous release took in `schema` (a stable
/// FNV-1a hash of its name); kept so the upgrade can fence those appends out.
pub(super) fn legacy_lock_key(schema: &str) -> i64 {
    hash(schema)
}

/// The seed of the per-stream append locks of `schema`: stores in different schemas never
/// wait on each other, even for a stream of the same name.
pub(super) fn stream_lock_seed(schema: &str) -> i64 {
    hash(&format!("streams.{schema}"))
}

fn hash(name: &str) -> i64 {
    // FNV-1a: stable across processes and releases (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"flotilla.eventstore.".iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}
