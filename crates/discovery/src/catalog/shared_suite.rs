//! The conformance suite of [`SharedCatalog`]: every shared store runs it from its own tests,
//! with two handles over the same (fresh) storage standing for two replicas.

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_core::ServiceName;
use futures_util::future::join_all;

use super::{CatalogStore, SharedCatalog, SharedEntry, WriteError};

/// Long enough for any healthy store; the suite waits for conditions, never for a duration.
const PATIENCE: Duration = Duration::from_secs(30);

fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).expect("test service names are valid")
}

fn shared<S: CatalogStore>(store: &S) -> &dyn SharedCatalog {
    store
        .shared()
        .expect("a shared store returns its replication side")
}

async fn all(store: &dyn SharedCatalog, after: u64) -> Vec<SharedEntry> {
    store
        .changes_after(after, 1000)
        .await
        .expect("read changes")
}

/// Runs every check; `a` and `b` are two handles over the same empty storage.
pub async fn shared_conformance<S: CatalogStore>(a: &S, b: &S) {
    let (a, b) = (shared(a), shared(b));
    conditional_writes_and_tombstones(a, b).await;
    indexes_are_unique_and_readable_in_order_under_concurrency(a, b).await;
    only_one_of_racing_creations_wins(a, b).await;
    a_write_wakes_the_other_handle(a, b).await;
    heartbeats_are_shared(a, b).await;
    leases_expire_or_end_on_leave(a, b).await;
}

async fn conditional_writes_and_tombstones(a: &dyn SharedCatalog, b: &dyn SharedCatalog) {
    let users = svc("users");
    assert!(all(a, 0).await.is_empty(), "a new store has no changes");
    let first = a
        .write(&users, "u1", Some("{\"v\":1}".into()), 0)
        .await
        .expect("create u1");
    assert!(first > 0, "indexes start above 0");
    let again = b.write(&users, "u1", Some("{}".into()), 0).await;
    assert_eq!(again, Err(WriteError::Conflict { current: first }));
    let second = b
        .write(&users, "u1", Some("{\"v\":2}".into()), first)
        .await
        .expect("update u1 from the index it was read at");
    assert!(second > first, "indexes grow");
    let seen = all(a, 0).await;
    assert_eq!(seen.len(), 1, "one row per instance: {seen:?}");
    assert_eq!(seen[0].document.as_deref(), Some("{\"v\":2}"));
    assert_eq!(
        (seen[0].create_index, seen[0].modify_index),
        (first, second)
    );
    let removed = a
        .write(&users, "u1", None, second)
        .await
        .expect("remove u1");
    let after = all(b, second).await;
    assert_eq!(after.len(), 1, "the removal is a change: {after:?}");
    assert_eq!(
        (after[0].document.as_deref(), after[0].modify_index),
        (None, removed)
    );
    assert_eq!(
        b.write(&users, "u1", None, second).await,
        Err(WriteError::Conflict { current: 0 }),
        "a removed instance counts as absent"
    );
    let back = b
        .write(&users, "u1", Some("{}".into()), 0)
        .await
        .expect("register the id again");
    let row = all(a, removed).await;
    assert_eq!((row[0].create_index, row[0].modify_index), (back, back));
    assert!(
        all(a, back).await.is_empty(),
        "nothing after the last index"
    );
}

async fn indexes_are_unique_and_readable_in_order_under_concurrency(
    a: &dyn SharedCatalog,
    b: &dyn SharedCatalog,
) {
    let start = all(a, 0).await.last().map_or(0, |e| e.modify_index);
    let orders = svc("orders");
    let ids: Vec<String> = (0..40).map(|i| format!("o{i}")).collect();
    let writes = ids.iter().enumerate().map(|(i, id)| {
        let store = if i % 2 == 0 { a } else { b };
        let orders = &orders;
        async move { store.write(orders, id, Some("{}".into()), 0).await }
    });
    let indexes: Vec<u64> = join_all(writes)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent creations of distinct ids all succeed"))
        .collect();
    let unique: BTreeSet<u64> = indexes.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "every write has its own index");
    let mut cursor = start;
    let mut read = Vec::new();
    loop {
        let page = a.changes_after(cursor, 7).await.expect("read a page");
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 7, "the limit is kept");
        cursor = last.modify_index;
        read.extend(page.into_iter().map(|e| e.modify_index));
    }
    assert!(
        read.windows(2).all(|w| w[0] < w[1]),
        "index order: {read:?}"
    );
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), unique);
}

async fn only_one_of_racing_creations_wins(a: &dyn SharedCatalog, b: &dyn SharedCatalog) {
    let race = svc("race");
    let writes = (0..10).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        let race = &race;
        async move {
            store
                .write(race, "x", Some(format!("{{\"w\":{i}}}")), 0)
                .await
        }
    });
    let results = join_all(writes).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "exactly one creation wins: {results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(WriteError::Conflict { .. }))),
        "the others conflict: {results:?}"
    );
}

async fn a_write_wakes_the_other_handle(a: &dyn SharedCatalog, b: &dyn SharedCatalog) {
    let mut wakes = b.notifications();
    wakes.borrow_and_update();
    let index = a
        .write(&svc("wake"), "w1", Some("{}".into()), 0)
        .await
        .expect("write");
    let heard = tokio::time::timeout(PATIENCE, wakes.wait_for(|i| *i >= index)).await;
    assert!(
        matches!(heard, Ok(Ok(_))),
        "the other handle hears of the write"
    );
}

async fn heartbeats_are_shared(a: &dyn SharedCatalog, b: &dyn SharedCatalog) {
    let users = svc("users");
    let never = b.since_beat(&users, "h1").await.expect("read a beat");
    assert_eq!(never, None, "no heartbeat yet");
    a.beat(&users, "h1").await.expect("beat");
    let since = b.since_beat(&users, "h1").await.expect("read a beat");
    assert!(
        since.is_some_and(|d| d < PATIENCE),
        "the other handle sees the heartbeat: {since:?}"
    );
}

async fn leases_expire_or_end_on_leave(a: &dyn SharedCatalog, b: &dyn SharedCatalog) {
    let long = Duration::from_secs(600);
    let live = a.renew("replica-a", long).await.expect("renew a");
    assert_eq!(live, ["replica-a"]);
    let live = b.renew("replica-b", long).await.expect("renew b");
    assert_eq!(live, ["replica-a", "replica-b"]);
    a.leave("replica-a").await.expect("leave");
    let live = b.renew("replica-b", long).await.expect("renew b");
    assert_eq!(live, ["replica-b"], "a replica that left is gone at once");
    a.renew("replica-c", Duration::from_millis(200))
        .await
        .expect("renew c");
    let expired = tokio::time::timeout(PATIENCE, async {
        loop {
            let live = b.renew("replica-b", long).await.expect("renew b");
            if live == ["replica-b"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(expired.is_ok(), "an unrenewed lease expires");
}
