//! The catalog's tables and its write function, in the configured schema.

/// DDL, with `{s}` standing for the schema name (validated as a plain identifier) and `{lock}`
/// for an advisory-lock key, so replicas starting together create the tables once. Notices
/// ("already exists, skipping" at every start) are not worth a log line.
const DDL: &str = "
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock({lock});
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.catalog_entries (
    service      text NOT NULL,
    id           text NOT NULL,
    document     text,
    create_index bigint NOT NULL,
    modify_index bigint NOT NULL,
    PRIMARY KEY (service, id)
);
CREATE INDEX IF NOT EXISTS catalog_entries_modify ON {s}.catalog_entries (modify_index);
CREATE TABLE IF NOT EXISTS {s}.catalog_meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO {s}.catalog_meta (key, value) VALUES ('index', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {s}.catalog_beats (
    service text NOT NULL,
    id      text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (service, id)
);
CREATE TABLE IF NOT EXISTS {s}.catalog_replicas (
    replica    text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {s}.catalog_write(
    p_service text, p_id text, p_document text, p_expected bigint, p_channel text
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    current bigint;
    drawn   bigint;
BEGIN
    -- The meta row's lock, held to commit, orders every write: the next writer draws its
    -- index only after this one committed, so indexes become visible in order.
    PERFORM 1 FROM {s}.catalog_meta WHERE key = 'index' FOR UPDATE;
    SELECT modify_index INTO current FROM {s}.catalog_entries
        WHERE service = p_service AND id = p_id AND document IS NOT NULL;
    IF coalesce(current, 0) <> p_expected THEN
        RETURN -coalesce(current, 0);
    END IF;
    UPDATE {s}.catalog_meta SET value = value + 1 WHERE key = 'index' RETURNING value INTO drawn;
    INSERT INTO {s}.catalog_entries AS e (service, id, document, create_index, modify_index)
        VALUES (p_service, p_id, p_document, drawn, drawn)
        ON CONFLICT (service, id) DO UPDATE SET
            document = excluded.document,
            modify_index = excluded.modify_index,
            create_index = CASE WHEN e.document IS NULL
                THEN excluded.create_index ELSE e.create_index END;
    IF p_document IS NULL THEN
        DELETE FROM {s}.catalog_beats WHERE service = p_service AND id = p_id;
    END IF;
    PERFORM pg_notify(p_channel, drawn::text);
    RETURN drawn;
END
$fn$;
";

/// The DDL for `schema`; it runs as one implicit transaction.
pub(super) fn ddl(schema: &str) -> String {
    DDL.replace("{s}", schema)
        .replace("{lock}", &lock_key(schema).to_string())
}

/// The advisory-lock key of the catalog's DDL in `schema` (FNV-1a of the name, so other
/// schemas' DDL does not wait on it).
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"flotilla-catalog:".iter().chain(schema.as_bytes()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The `LISTEN` channel of the catalog in `schema`: PostgreSQL truncates channel names to 63
/// bytes, so a long schema name is cut (two schemas sharing a channel only wake each other
/// needlessly, never miss a change).
pub(super) fn channel(schema: &str) -> String {
    let mut name = format!("flotilla_catalog_{schema}");
    name.truncate(63);
    name
}

/// The statements, with the schema filled in once.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) write: String,
    pub(super) put: String,
    pub(super) remove: String,
    pub(super) load_entries: String,
    pub(super) load_index: String,
    pub(super) changes_after: String,
    pub(super) beat: String,
    pub(super) since_beat: String,
    pub(super) renew: String,
    pub(super) leave: String,
}

impl Sql {
    pub(super) fn new(s: &str) -> Self {
        Self {
            write: format!("SELECT {s}.catalog_write($1, $2, $3, $4, $5)"),
            put: format!(
                "WITH up AS (
                    INSERT INTO {s}.catalog_entries AS e
                        (service, id, document, create_index, modify_index)
                    VALUES ($1, $2, $3, $4, $4)
                    ON CONFLICT (service, id) DO UPDATE SET
                        document = excluded.document,
                        modify_index = excluded.modify_index,
                        create_index = CASE WHEN e.document IS NULL
                            THEN excluded.create_index ELSE e.create_index END)
                 UPDATE {s}.catalog_meta SET value = greatest(value, $4) WHERE key = 'index'"
            ),
            remove: format!(
                "WITH gone AS (
                    UPDATE {s}.catalog_entries SET document = NULL, modify_index = $3
                    WHERE service = $1 AND id = $2 AND document IS NOT NULL)
                 UPDATE {s}.catalog_meta SET value = greatest(value, $3) WHERE key = 'index'"
            ),
            load_entries: format!(
                "SELECT service, id, document FROM {s}.catalog_entries WHERE document IS NOT NULL"
            ),
            load_index: format!("SELECT value FROM {s}.catalog_meta WHERE key = 'index'"),
            changes_after: format!(
                "SELECT service, id, document, create_index, modify_index
                 FROM {s}.catalog_entries WHERE modify_index > $1
                 ORDER BY modify_index LIMIT $2"
            ),
            beat: format!(
                "INSERT INTO {s}.catalog_beats (service, id, at) VALUES ($1, $2, now())
                 ON CONFLICT (service, id) DO UPDATE SET at = excluded.at"
            ),
            since_beat: format!(
                "SELECT greatest(extract(epoch FROM clock_timestamp() - at), 0)::float8
                 FROM {s}.catalog_beats WHERE service = $1 AND id = $2"
            ),
            renew: format!(
                "WITH up AS (
                    INSERT INTO {s}.catalog_replicas (replica, expires_at)
                    VALUES ($1, clock_timestamp() + make_interval(secs => $2))
                    ON CONFLICT (replica) DO UPDATE SET expires_at = excluded.expires_at
                    RETURNING replica),
                 old AS (
                    DELETE FROM {s}.catalog_replicas
                    WHERE expires_at < clock_timestamp() - interval '1 hour')
                 SELECT replica FROM {s}.catalog_replicas
                    WHERE expires_at > clock_timestamp() AND replica <> $1
                 UNION SELECT replica FROM up
                 ORDER BY 1"
            ),
            leave: format!("DELETE FROM {s}.catalog_replicas WHERE replica = $1"),
        }
    }
}
