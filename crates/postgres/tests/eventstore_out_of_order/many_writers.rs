//! Many writers, long and short transactions interleaved, and readers running throughout: no
//! reader ever skips an event.
//!
//! Short writers append (1 to 3 events) and commit at once, in a loop. Long writers open a
//! transaction, append to two streams in it, and hold it open until at least ten short appends
//! have committed after it **and** the `read_all` reader has finished two more rounds, so every
//! long transaction has committed positions above its own that a careless reader would pass;
//! then one in three rolls back, the others commit. A `read_all` loop and a subscription run
//! the whole time. At the end, what each saw must equal the final full read of `$all`, which
//! must hold exactly the committed appends.
//!
//! Checked to fail without the gap protection: with the read bound in
//! `src/eventstore/sql.rs` (`BOUND`) replaced by `9223372036854775807`, the reader passes the
//! open long transactions and this test fails on "the reader saw every event".

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, Filter, NewEvent, ReadAll, subscribe_all,
};
use serde_json::json;
use tokio::sync::watch;

use super::{drop_schema, open, sid};

const SHORT_WRITERS: usize = 12;
const LONG_WRITERS: usize = 4;
const LONG_ROUNDS: usize = 3;
/// Short commits that must land after a long transaction's appends before it ends.
const COMMITS_PAST: u64 = 10;
/// Reader rounds that must finish after those commits before it ends.
const ROUNDS_PAST: u64 = 2;
/// Guard against a hang; a pass takes seconds.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the writers and the reader tell each other.
#[derive(Clone)]
struct Progress {
    commits: Arc<watch::Sender<u64>>,
    rounds: Arc<watch::Sender<u64>>,
    long_done: Arc<watch::Sender<bool>>,
}

/// Waits until `counter` has grown by `more` from now.
async fn grown_by(counter: &watch::Sender<u64>, more: u64) {
    let mut rx = counter.subscribe();
    let n = *rx.borrow_and_update() + more;
    tokio::time::timeout(PATIENCE, rx.wait_for(|v| *v >= n))
        .await
        .expect("progress within the patience")
        .unwrap();
}

/// Every position an append committed (positions of one transaction are contiguous).
fn positions(r: &AppendResult, events: u64) -> impl Iterator<Item = u64> {
    (r.last_position + 1 - events)..=r.last_position
}

fn batch(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("E", json!(i))).collect()
}

async fn short_writer(store: Arc<dyn EventStore>, w: usize, p: Progress) -> Vec<u64> {
    let mut committed = Vec::new();
    let mut j = 0;
    while j < 5 || !*p.long_done.borrow() {
        let n = 1 + j % 3;
        let stream = sid(&format!("short-{w}"));
        let r = store.append(&stream, ExpectedVersion::Any, batch(n)).await;
        committed.extend(positions(&r.unwrap(), n as u64));
        p.commits.send_modify(|c| *c += 1);
        j += 1;
    }
    committed
}

async fn long_writer(
    store: Arc<flotilla_postgres::eventstore::PgEventStore>,
    w: usize,
    p: Progress,
) -> (Vec<u64>, Vec<u64>) {
    let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
    for round in 0..LONG_ROUNDS {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let mut mine = Vec::new();
        for stream in [format!("long-{w}"), format!("other-{w}")] {
            let r = store
                .append_in(&tx, &sid(&stream), ExpectedVersion::Any, &batch(2))
                .await
                .unwrap();
            mine.extend(positions(&r, 2));
        }
        grown_by(&p.commits, COMMITS_PAST).await;
        grown_by(&p.rounds, ROUNDS_PAST).await;
        if (w + round).is_multiple_of(3) {
            tx.rollback().await.unwrap();
            rolled_back.extend(mine);
        } else {
            tx.commit().await.unwrap();
            store.announce();
            committed.extend(mine);
        }
    }
    (committed, rolled_back)
}

/// `read_all` in small pages until it has passed `last`, counting rounds.
async fn reader(store: Arc<dyn EventStore>, p: Progress, last: watch::Receiver<u64>) -> Vec<u64> {
    let (mut seen, mut after) = (Vec::new(), 0);
    loop {
        let page = store.read_all(ReadAll::after(after, 7)).await.unwrap();
        for e in page {
            assert!(e.position > after, "positions only grow");
            seen.push(e.position);
            after = e.position;
        }
        p.rounds.send_modify(|r| *r += 1);
        if *last.borrow() > 0 && after >= *last.borrow() {
            return seen;
        }
    }
}

async fn subscriber(store: Arc<dyn EventStore>, mut last: watch::Receiver<u64>) -> Vec<u64> {
    let mut sub = subscribe_all(store, 0, Filter::All);
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let target = *last.borrow_and_update();
        if target > 0 && seen.last().is_some_and(|s| *s >= target) {
            return seen;
        }
        tokio::select! {
            e = sub.next() => seen.push(e.unwrap().unwrap().position),
            _ = last.changed() => {}
        }
    }
}

async fn everything(store: &dyn EventStore) -> Vec<u64> {
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let page = store.read_all(ReadAll::after(after, 500)).await.unwrap();
        let Some(tail) = page.last() else {
            return all;
        };
        after = tail.position;
        all.extend(page.iter().map(|e| e.position));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_short_transactions_never_make_a_reader_skip() {
    let Some((store, schema)) = open().await else {
        return;
    };
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let p = Progress {
        commits: Arc::new(watch::Sender::new(0)),
        rounds: Arc::new(watch::Sender::new(0)),
        long_done: Arc::new(watch::Sender::new(false)),
    };
    let (last_tx, last) = watch::channel(0u64);
    let read = tokio::spawn(reader(dyn_store.clone(), p.clone(), last.clone()));
    let sub = tokio::spawn(subscriber(dyn_store.clone(), last));
    let shorts: Vec<_> = (0..SHORT_WRITERS)
        .map(|w| tokio::spawn(short_writer(dyn_store.clone(), w, p.clone())))
        .collect();
    let longs: Vec<_> = (0..LONG_WRITERS)
        .map(|w| tokio::spawn(long_writer(store.clone(), w, p.clone())))
        .collect();

    let (mut committed, mut rolled_back) = (BTreeSet::new(), BTreeSet::new());
    for l in longs {
        let (c, r) = tokio::time::timeout(PATIENCE, l).await.unwrap().unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    p.long_done.send_replace(true);
    for s in shorts {
        committed.extend(s.await.unwrap());
    }
    let max = *committed.last().unwrap();
    last_tx.send_replace(max);
    let read = tokio::time::timeout(PATIENCE, read).await.unwrap().unwrap();
    let sub = tokio::time::timeout(PATIENCE, sub).await.unwrap().unwrap();

    let all = everything(&*store).await;
    let expected: Vec<u64> = committed.iter().copied().collect();
    assert_eq!(all, expected, "$all holds exactly the committed appends");
    assert!(rolled_back.iter().all(|r| !committed.contains(r)));
    assert!(
        !rolled_back.is_empty(),
        "some long transactions rolled back"
    );
    assert_eq!(read, all, "the reader saw every event, in order");
    assert_eq!(sub, all, "the subscription saw every event, in order");
    drop_schema(&store, &schema).await;
}
