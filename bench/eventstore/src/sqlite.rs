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

/// Plain select of the event rows, same columns, no JSON decoding: rows per second.
async fn plain_read(db: &Database) -> f64 {
    let start = Instant::now();
    let (mut after, mut n) = (0i64, 0usize);
    loop {
        let page = db
            .reads()
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT position, id, stream, version, type, data, metadata, recorded_at \
                     FROM es_events WHERE position > ?1 ORDER BY position LIMIT 1000",
                )?;
                let rows = st.query_map([after], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .expect("plain read");
        let Some(last) = page.last() else { break };
        after = last.0;
        n += page.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs every SQLite measurement.
pub async fn run(sizes: Sizes) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Database::open(Options::new(dir.path().join("bench.db"))).expect("open database");
    db.writer()
        .write(|c| c.execute_batch(PLAIN).map_err(Error::from))
        .await
        .expect("plain table");
    let es = SqliteEventStore::open(db.clone(), None).await.expect("event store");
    let store: Arc<dyn EventStore> = Arc::new(es);
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
    let plain = plain_read(&db).await;
    let (n, read) = crate::read_all(&store).await;
    rows.push(Row { what: "read $all, pages of 1,000 (events/s)", store: read, plain });
    rows.push(Row {
        what: "subscription from the start (events/s; baseline: plain read)",
        store: crate::subscription(&store, n).await,
        plain,
    });
    println!("SQLite: {n} events stored");
    rows
}
