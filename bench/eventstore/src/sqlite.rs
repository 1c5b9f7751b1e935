//! SQLite: the event store next to plain inserts through the same group-commit writer, and
//! plain selects of the same rows through the same read pool.

use std::sync::Arc;
use std::time::Instant;

use flotilla_eventstore::EventStore;
use flotilla_sqlite::eventstore::SqliteEventStore;
use flotilla_sqlite::{Database, Error, Options};
use rusqlite::params;

use crate::{Row, Sizes, rate};

const PLAIN: &str = "CREATE TABLE plain (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
    id BLOB NOT NULL UNIQUE, stream TEXT NOT NULL, data TEXT NOT NULL)";

async fn insert(db: &Database, stream: String, rows: usize) {
    db.writer()
        .write(move |c| {
            let mut st = c.prepare_cached("INSERT INTO plain (id, stream, data) VALUES (?1, ?2, ?3)")?;
            for i in 0..rows {
                let data = format!("{{\"i\":{i},\"note\":\"a small payload of some forty bytes\"}}");
                st.execute(params![uuid::Uuid::now_v7().as_bytes(), stream, data])?;
            }
            Ok::<_, Error>(())
        })
        .await
        .expect("plain insert");
}

async fn plain_sequential(db: &Database, n: usize) -> f64 {
    rate(n, async {
        for _ in 0..n {
            insert(db, "seq-1".into(), 1).await;
        }
    })
    .await
}

async fn plain_concurrent(db: &Database, tasks: usize, per: usize, rows: usize) -> f64 {
    rate(tasks * per * rows, async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let db = db.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        insert(&db, format!("s-{t}"), rows).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("plain task");
        }
    })
    .await
}

const PAGE: &str = "SELECT position, id, stream, version, type, data, metadata, recorded_at \
     FROM es_events WHERE position > ?1 ORDER BY position LIMIT 1000";

type PlainRow = (i64, Vec<u8>, String, i64, String, String, String, i64);

fn plain_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PlainRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

/// The bare rusqlite loop: one read connection of its own on this thread, the same paged
/// select and row copies as [`plain_read`], no pool or thread hand-off: rows read.
fn bare_read(c: &rusqlite::Connection) -> usize {
    let (mut after, mut n) = (0i64, 0usize);
    let mut st = c.prepare_cached(PAGE).expect("statement");
    loop {
        let page: Vec<PlainRow> =
            st.query_map([after], plain_row).and_then(Iterator::collect).expect("bare read");
        let Some(last) = page.last() else { break };
        after = last.0;
        n += page.len();
    }
    n
}

/// `$all` in pages of 1,000 with data and metadata left as raw JSON: events read.
async fn raw_read(store: &SqliteEventStore) -> usize {
    let (mut after, mut n) = (0, 0);
    loop {
        let page = store
            .read_all_raw(flotilla_eventstore::ReadAll::after(after, 1000))
            .await
            .expect("raw read");
        let Some(last) = page.last() else { break };
        after = last.position;
        n += page.len();
    }
    n
}

/// Events per second of whole passes over `$all` repeated for at least a second: one pass
/// takes a fraction of a second, too short to measure on a shared machine.
async fn sustained<F: std::future::Future<Output = usize>>(mut pass: impl FnMut() -> F) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed().as_secs_f64() < 1.0 {
        n += pass().await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The four ways of reading `$all`, measured in turn three times over; the median of each.
async fn reads(
    db: &Database,
    path: &std::path::Path,
    es: &Arc<SqliteEventStore>,
    store: &Arc<dyn EventStore>,
) -> [f64; 4] {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let bare = Arc::new(std::sync::Mutex::new(
        rusqlite::Connection::open_with_flags(path, flags).expect("read connection"),
    ));
    let mut runs: [Vec<f64>; 4] = Default::default();
    for _ in 0..3 {
        runs[0].push(sustained(|| plain_read(db)).await);
        runs[1].push(sustained(|| async { crate::read_all(store).await.0 }).await);
        runs[2].push(sustained(|| raw_read(es)).await);
        let c = bare.clone();
        let bare_rate = tokio::task::spawn_blocking(move || {
            let c = c.lock().expect("bare connection");
            blocking_sustained(|| bare_read(&c))
        });
        runs[3].push(bare_rate.await.expect("bare read"));
    }
    runs.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[1]
    })
}

/// [`sustained`] for a blocking pass.
fn blocking_sustained(mut pass: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed().as_secs_f64() < 1.0 {
        n += pass();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Plain select of the event rows, same columns, no JSON decoding, through the read pool: rows
/// read.
async fn plain_read(db: &Database) -> usize {
    let (mut after, mut n) = (0i64, 0usize);
    loop {
        let page = db
            .reads()
            .read(move |c| {
                let mut st = c.prepare_cached(PAGE)?;
                Ok(st.query_map([after], plain_row)?.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .expect("plain read");
        let Some(last) = page.last() else { break };
        after = last.0;
        n += page.len();
    }
    n
}

/// Runs every SQLite measurement.
pub async fn run(sizes: Sizes) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut options = Options::new(dir.path().join("bench.db"));
    // `ES_MERGE=0`: each append in its own savepoint, as before appends were merged (A/B).
    options.merge_writes = std::env::var("ES_MERGE").map_or(true, |v| v != "0");
    let db = Database::open(options).expect("open database");
    db.writer()
        .write(|c| c.execute_batch(PLAIN).map_err(Error::from))
        .await
        .expect("plain table");
    let es = Arc::new(SqliteEventStore::open(db.clone(), None).await.expect("event store"));
    let store: Arc<dyn EventStore> = es.clone();
    let b = sizes;
    let mut rows = vec![
        Row {
            what: "append, one stream, sequential (appends/s)",
            store: crate::sequential(&store, b.sequential).await,
            plain: plain_sequential(&db, b.sequential).await,
        },
        Row {
            what: "append, 1,000 streams concurrent (appends/s)",
            store: crate::concurrent(&store, b.streams, b.per_stream).await,
            plain: plain_concurrent(&db, b.streams, b.per_stream, 1).await,
        },
        Row {
            what: "append, batches of 100 (events/s)",
            store: crate::batched(&store, b).await,
            plain: plain_concurrent(&db, b.batch_tasks, b.batches, b.batch).await,
        },
    ];
    let (n, _) = crate::read_all(&store).await;
    let [plain, read, raw, bare] = reads(&db, &dir.path().join("bench.db"), &es, &store).await;
    rows.push(Row { what: "read $all, pages of 1,000 (events/s)", store: read, plain });
    rows.push(Row { what: "read $all raw JSON, pages of 1,000 (events/s)", store: raw, plain });
    rows.push(Row {
        what: "read $all raw JSON (events/s; baseline: bare rusqlite loop, own connection)",
        store: raw,
        plain: bare,
    });
    rows.push(Row {
        what: "subscription from the start (events/s; baseline: plain read)",
        store: crate::subscription(&store, n).await,
        plain,
    });
    println!("SQLite: {n} events stored");
    rows
}
