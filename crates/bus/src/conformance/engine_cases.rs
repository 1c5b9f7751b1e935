//! Cases on the delivery engine over the backend: the retry/DLQ policy, handler timeouts and
//! crashed consumers behave the same on every backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Harness, PATIENCE, event, event_number};
use crate::{
    Backoff, Bus, DeadLetter, DeliveryPolicy, DlqQuery, FailureReason, GroupName, HandlerError,
    Outgoing,
};

fn quick_policy(max_deliveries: u32) -> DeliveryPolicy {
    DeliveryPolicy {
        max_deliveries,
        backoff: Backoff::List {
            delays: vec![Duration::from_millis(100)],
        },
    }
}

/// Waits until the group's DLQ holds at least one entry, then a little longer so a wrong
/// second entry would show, and returns them all.
async fn dead_letters(h: &Harness, g: &GroupName) -> Vec<DeadLetter> {
    let q = DlqQuery {
        group: Some(g.clone()),
        ..DlqQuery::default()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let list = h.backend.dlq_list(&q).await.expect("dlq_list");
        if !list.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return h.backend.dlq_list(&q).await.expect("dlq_list");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

/// A handler that always fails runs exactly `max_deliveries` times; then exactly one dead
/// letter carries the event, the attempts and the last error.
pub async fn engine_max_deliveries_then_exactly_one_dead_letter(h: Harness) {
    let (t, g) = (h.topic("emax", "e"), h.group("emax", "g"));
    let bus = Bus::new(Arc::clone(&h.backend));
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let sub = bus
        .subscribe(t.as_str())
        .group(g.as_str())
        .policy(quick_policy(3))
        .handler(move |r| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Err(HandlerError::retry(format!("boom {n} at {}", r.attempt))) }
        })
        .await
        .expect("subscribe");
    h.publish(vec![Outgoing::new(t, event(11))]).await;
    let list = dead_letters(&h, &g).await;
    sub.stop().await;
    assert_eq!(list.len(), 1, "exactly one dead letter: {list:?}");
    let dl = &list[0];
    assert_eq!((dl.reason, dl.attempts), (FailureReason::MaxDeliveries, 3));
    assert_eq!(dl.last_error, "boom 3 at 3");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no delivery after the last"
    );
    h.cleanup(&[&g]).await;
}

/// A handler that outlives its timeout fails that attempt like an error does.
pub async fn engine_handler_timeout_counts_as_a_failure(h: Harness) {
    let (t, g) = (h.topic("etimeout", "e"), h.group("etimeout", "g"));
    let bus = Bus::new(Arc::clone(&h.backend));
    let sub = bus
        .subscribe(t.as_str())
        .group(g.as_str())
        .policy(quick_policy(2))
        .handler_timeout(Duration::from_millis(200))
        .handler(|_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await
        .expect("subscribe");
    h.publish(vec![Outgoing::new(t, event(12))]).await;
    let list = dead_letters(&h, &g).await;
    sub.stop().await;
    assert_eq!(list.len(), 1, "timed-out attempts end in one dead letter");
    assert_eq!(
        (list[0].attempts, list[0].reason),
        (2, FailureReason::MaxDeliveries)
    );
    assert!(
        list[0].last_error.contains("timed out"),
        "{}",
        list[0].last_error
    );
    h.cleanup(&[&g]).await;
}

/// A consumer that dies while its handler runs settles nothing; once the lease ends another
/// consumer of the group gets the event (attempt 2) and acks it.
pub async fn engine_consumer_dying_mid_handler_hands_the_event_to_another(h: Harness) {
    let (t, g) = (h.topic("ecrash", "e"), h.group("ecrash", "g"));
    let bus = Bus::new(Arc::clone(&h.backend));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let doomed = bus
        .subscribe(t.as_str())
        .group(g.as_str())
        .handler_timeout(Duration::from_millis(800))
        .lease_margin(Duration::from_millis(200))
        .handler(move |_| {
            let _ = started_tx.send(());
            std::future::pending::<Result<(), HandlerError>>()
        })
        .await
        .expect("subscribe");
    h.publish(vec![Outgoing::new(t.clone(), event(13))]).await;
    tokio::time::timeout(PATIENCE, started.recv())
        .await
        .expect("the first consumer starts handling");
    doomed.abort();
    let (got_tx, mut got) = mpsc::unbounded_channel();
    let survivor = bus
        .subscribe(t.as_str())
        .group(g.as_str())
        .handler(move |r| {
            let _ = got_tx.send((event_number(&r.event), r.attempt));
            async { Ok(()) }
        })
        .await
        .expect("subscribe");
    let (n, attempt) = tokio::time::timeout(PATIENCE, got.recv())
        .await
        .expect("redelivered to the surviving consumer")
        .expect("handler channel open");
    survivor.stop().await;
    assert_eq!((n, attempt), (13, 2));
    let q = DlqQuery {
        group: Some(g.clone()),
        ..DlqQuery::default()
    };
    assert!(h.backend.dlq_list(&q).await.expect("dlq_list").is_empty());
    h.cleanup(&[&g]).await;
}
