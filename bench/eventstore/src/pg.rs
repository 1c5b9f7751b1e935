//! PostgreSQL: the event store next to plain inserts (one transaction per append, like the
//! store) and plain selects through a pool of the same size, in a schema created for the run.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use flotilla_eventstore::EventStore;
use flotilla_postgres::Options;
use flotilla_postgres::eventstore::PgEventStore;
use serde_json::json;

use crate::{Row, Sizes, rate};

async fn insert(pool: &Pool, schema: &str, stream: &str, rows: usize) {
    let mut client = pool.get().await.expect("connection");
    let tx = client.transaction().await.expect("begin");
    let sql = format!("INSERT INTO {schema}.plain (id, stream, data) VALUES ($1, $2, $3)");
    let st = tx.prepare_cached(&sql).await.expect("prepare");
    for i in 0..rows {
        let data = json!({ "i": i, "note": "a small payload of some forty bytes" });
        tx.execute(&st, &[&uuid::Uuid::now_v7(), &stream, &data])
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
}

async fn plain_concurrent(pool: &Pool, schema: &str, tasks: usize, per: usize, rows: usize) -> f64 {
    rate(tasks * per * rows, async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (pool, schema) = (pool.clone(), schema.to_owned());
                tokio::spawn(async move {
                    for _ in 0..per {
                        insert(&pool, &schema, &format!("s-{t}"), rows).await;
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

async fn plain_read(pool: &Pool, schema: &str) -> f64 {
    let client = pool.get().await.expect("connection");
    let sql = format!(
        "SELECT position, id, stream, version, type, data, metadata, recorded_at \
         FROM {schema}.es_events WHERE position > $1 ORDER BY position LIMIT 1000"
    );
    let st = client.prepare_cached(&sql).await.expect("prepare");
    let start = Instant::now();
    let (mut after, mut n) = (0i64, 0usize);
    loop {
        let rows = client.query(&st, &[&after]).await.expect("select");
        let Some(last) = rows.last() else { break };
        for r in &rows {
            let _: (uuid::Uuid, String, serde_json::Value) = (r.get(1), r.get(2), r.get(5));
        }
        after = last.get(0);
        n += rows.len();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs every PostgreSQL measurement, or `None` when no server answers.
/// With `concurrent_rounds`, only the concurrent appends, that many times.
pub async fn run(sizes: Sizes, concurrent_rounds: Option<usize>) -> Option<Vec<Row>> {
    let url = std::env::var("FLOTILLA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let schema = format!("es_bench_{}", std::process::id());
    let options = Options { schema: schema.clone(), pool_size: 16, ..Options::new(url) };
    let es = PgEventStore::open(&options).await.ok()?;
    let pool = es.pool().clone();
    let plain = format!(
        "CREATE TABLE {schema}.plain (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, \
         stream text NOT NULL, data jsonb NOT NULL)"
    );
    pool.get().await.ok()?.batch_execute(&plain).await.ok()?;
    let store: Arc<dyn EventStore> = Arc::new(es);
    let b = sizes;
    if let Some(rounds) = concurrent_rounds {
        // Only the concurrent appends, store and plain in turn, each round on fresh streams.
        let mut rows = Vec::new();
        for round in 0..rounds {
            let prefix = format!("r{round}");
            rows.push(Row {
                what: "append, 1,000 streams concurrent (appends/s)",
                store: crate::concurrent_named(&store, &prefix, b.streams, b.per_stream).await,
                plain: plain_concurrent(&pool, &schema, b.streams, b.per_stream, 1).await,
            });
        }
        let drop = format!("DROP SCHEMA {schema} CASCADE");
        if let Ok(c) = pool.get().await {
            let _ = c.batch_execute(&drop).await;
        }
        return Some(rows);
    }
    let mut rows = vec![
        Row {
            what: "append, one stream, sequential (appends/s)",
            store: crate::sequential(&store, b.sequential).await,
            plain: plain_concurrent(&pool, &schema, 1, b.sequential, 1).await,
        },
        Row {
            what: "append, 1,000 streams concurrent (appends/s)",
            store: crate::concurrent(&store, b.streams, b.per_stream).await,
            plain: plain_concurrent(&pool, &schema, b.streams, b.per_stream, 1).await,
        },
        Row {
            what: "append, batches of 100 (events/s)",
            store: crate::batched(&store, b).await,
            plain: plain_concurrent(&pool, &schema, b.batch_tasks, b.batches, b.batch).await,
        },
    ];
    let plain = plain_read(&pool, &schema).await;
    let (n, read) = crate::read_all(&store).await;
    rows.push(Row { what: "read $all, pages of 1,000 (events/s)", store: read, plain });
    rows.push(Row {
        what: "subscription from the start (events/s; baseline: plain read)",
        store: crate::subscription(&store, n).await,
        plain,
    });
    println!("PostgreSQL: {n} events stored");
    let drop = format!("DROP SCHEMA {schema} CASCADE");
    if let Ok(c) = pool.get().await {
        let _ = c.batch_execute(&drop).await;
    }
    Some(rows)
}
