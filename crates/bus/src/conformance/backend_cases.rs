//! Cases on the backend primitives: routing, leases, nack delays, dead letters, ordering,
//! delayed publish and dedupe.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{EARLY_SLACK, Harness, PATIENCE, event, number};
use crate::{DlqQuery, Error, Failure, FailureReason, GroupSpec, Outgoing, PublishOutcome};

const SHORT: Duration = Duration::from_millis(300);

/// An event published after a group is declared is delivered to it once, intact, then gone
/// after its ack.
pub async fn consume_after_publish(h: Harness) {
    let (t, g) = (h.topic("cap", "created"), h.group("cap", "g"));
    h.declare(&g, t.as_str()).await;
    let sent = event(1);
    h.publish(vec![Outgoing::new(t.clone(), sent.clone())])
        .await;
    let got = h.receive_n(&g, 1).await;
    assert_eq!(got.len(), 1, "the published event is delivered");
    let d = &got[0];
    assert_eq!(
        (&d.event.id, &d.event.source, &d.event.ty),
        (&sent.id, &sent.source, &sent.ty)
    );
    assert_eq!(d.event.data, sent.data, "payload intact");
    assert_eq!((d.topic.clone(), d.attempt), (t, 1));
    h.backend.ack(&d.receipt).await.expect("ack");
    assert!(
        h.receive(&g, 10, SHORT).await.is_empty(),
        "acked events are not redelivered"
    );
    h.cleanup(&[&g]).await;
}

/// A group receives events of matching topics only; `*` is one segment, `>` the tail.
pub async fn patterns_route_only_matching_topics(h: Harness) {
    let star = h.group("route", "star");
    let ns = &h.namespace;
    h.declare(&star, &format!("{ns}.route.orders.*")).await;
    let hit = h.topic("route", "orders.created");
    let miss = h.topic("route", "payments.created");
    let deep = h.topic("route", "orders.created.v2");
    h.publish(vec![
        Outgoing::new(miss, event(1)),
        Outgoing::new(deep, event(2)),
        Outgoing::new(hit, event(3)),
    ])
    .await;
    let got = h.receive_n(&star, 1).await;
    assert_eq!(got.iter().map(number).collect::<Vec<_>>(), [3]);
    h.backend.ack(&got[0].receipt).await.expect("ack");
    assert!(
        h.receive(&star, 10, SHORT).await.is_empty(),
        "no other topic matched"
    );
    h.cleanup(&[&star]).await;
}

/// Two consumers of one group share its events (each event to one of them); a second group
/// gets its own copy of every event.
pub async fn consumers_in_a_group_compete_and_groups_fan_out(h: Harness) {
    let t = h.topic("fan", "e");
    let (a, b) = (h.group("fan", "a"), h.group("fan", "b"));
    h.declare(&a, t.as_str()).await;
    h.declare(&b, t.as_str()).await;
    h.publish(
        (0..10)
            .map(|n| Outgoing::new(t.clone(), event(n)))
            .collect(),
    )
    .await;
    let (h1, h2) = (h.clone(), h.clone());
    let (a1, a2) = (a.clone(), a.clone());
    let c1 = tokio::spawn(async move { h1.receive_n(&a1, 5).await });
    let c2 = tokio::spawn(async move { h2.receive_n(&a2, 5).await });
    let mut seen: Vec<u64> = Vec::new();
    for c in [c1, c2] {
        for d in c.await.expect("consumer task") {
            seen.push(number(&d));
            h.backend.ack(&d.receipt).await.expect("ack");
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "each event to exactly one consumer"
    );
    let mut fan: Vec<u64> = h.receive_n(&b, 10).await.iter().map(number).collect();
    fan.sort_unstable();
    assert_eq!(
        fan,
        (0..10).collect::<Vec<_>>(),
        "the other group gets every event"
    );
    h.cleanup(&[&a, &b]).await;
}

/// A nack with a delay hides the event for that long, then delivers it again (attempt 2).
pub async fn nack_with_delay_redelivers_after_the_delay_not_before(h: Harness) {
    let (t, g) = (h.topic("nack", "e"), h.group("nack", "g"));
    h.declare(&g, t.as_str()).await;
    h.publish(vec![Outgoing::new(t, event(1))]).await;
    let d = h.receive_n(&g, 1).await.pop().expect("first delivery");
    let delay = Duration::from_millis(1500);
    let nacked = Instant::now();
    h.backend.nack(&d.receipt, delay).await.expect("nack");
    assert!(
        h.receive(&g, 1, SHORT).await.is_empty(),
        "not redelivered before the delay"
    );
    let again = h
        .receive_n(&g, 1)
        .await
        .pop()
        .expect("redelivered after the delay");
    assert!(
        nacked.elapsed() + EARLY_SLACK >= delay,
        "redelivered after {:?}",
        nacked.elapsed()
    );
    assert_eq!((again.attempt, number(&again)), (2, 1));
    h.backend.ack(&again.receipt).await.expect("ack");
    h.cleanup(&[&g]).await;
}

/// A consumer that stops without settling (it crashed) loses its lease; another consumer
/// then receives the event, and the stale receipt no longer settles it.
pub async fn expired_lease_redelivers_to_another_consumer(h: Harness) {
    let (t, g) = (h.topic("lease", "e"), h.group("lease", "g"));
    h.declare(&g, t.as_str()).await;
    h.publish(vec![Outgoing::new(t, event(7))]).await;
    let lease = Duration::from_secs(1);
    let first = h
        .backend
        .receive(&g, 1, lease, PATIENCE)
        .await
        .expect("receive");
    let first = first
        .into_iter()
        .next()
        .expect("first consumer gets the event");
    let taken = Instant::now();
    let second = h
        .receive_n(&g, 1)
        .await
        .pop()
        .expect("redelivered once the lease expired");
    assert!(
        taken.elapsed() + EARLY_SLACK >= lease,
        "not before the lease ended"
    );
    assert_eq!((second.attempt, number(&second)), (2, 7));
    if h.backend.capabilities().fenced_receipts {
        let stale = h.backend.ack(&first.receipt).await;
        assert!(
            matches!(stale, Err(Error::LeaseLost)),
            "stale ack: {stale:?}"
        );
    } else {
        h.exception("fenced receipts (a stale ack is not refused)");
    }
    h.backend
        .ack(&second.receipt)
        .await
        .expect("the new holder acks");
    assert!(h.receive(&g, 1, SHORT).await.is_empty());
    h.cleanup(&[&g]).await;
}

/// Dead-lettering keeps the event and its failure, once, and stops delivery.
pub async fn dead_letter_keeps_the_event_and_the_failure(h: Harness) {
    let (t, g) = (h.topic("dlq", "e"), h.group("dlq", "g"));
    h.declare(&g, t.as_str()).await;
    let sent = event(3);
    h.publish(vec![Outgoing::new(t.clone(), sent.clone())])
        .await;
    let before = SystemTime::now() - Duration::from_secs(1);
    for attempt in 1..=3 {
        let d = h.receive_n(&g, 1).await.pop().expect("delivery");
        assert_eq!(d.attempt, attempt);
        if attempt < 3 {
            h.backend
                .nack(&d.receipt, Duration::ZERO)
                .await
                .expect("nack");
            continue;
        }
        let failure = Failure {
            reason: FailureReason::MaxDeliveries,
            last_error: "boom 3".into(),
        };
        h.backend
            .dead_letter(&d.receipt, failure)
            .await
            .expect("dead_letter");
    }
    assert!(
        h.receive(&g, 1, SHORT).await.is_empty(),
        "dead letters are not delivered"
    );
    let q = DlqQuery {
        group: Some(g.clone()),
        ..DlqQuery::default()
    };
    let list = h.backend.dlq_list(&q).await.expect("dlq_list");
    assert_eq!(list.len(), 1, "exactly one dead letter");
    let dl = &list[0];
    assert_eq!((&dl.event.id, &dl.event.data), (&sent.id, &sent.data));
    assert_eq!(
        (&dl.group, &dl.topic, dl.reason),
        (&g, &t, FailureReason::MaxDeliveries)
    );
    assert_eq!((dl.attempts, dl.last_error.as_str()), (3, "boom 3"));
    assert!(dl.published_at >= before && dl.dead_lettered_at >= dl.published_at);
    assert_eq!(&h.backend.dlq_get(&dl.id).await.expect("dlq_get"), dl);
    h.cleanup(&[&g]).await;
}

async fn one_dead_letter(h: &Harness, case: &str, n: u32) -> (crate::GroupName, String) {
    let (t, g) = (h.topic(case, "e"), h.group(case, "g"));
    h.declare(&g, t.as_str()).await;
    h.publish(vec![Outgoing::new(t, event(n))]).await;
    let d = h.receive_n(&g, 1).await.pop().expect("delivery");
    let failure = Failure {
        reason: FailureReason::Rejected,
        last_error: "poison".into(),
    };
    h.backend
        .dead_letter(&d.receipt, failure)
        .await
        .expect("dead_letter");
    let q = DlqQuery {
        group: Some(g.clone()),
        ..DlqQuery::default()
    };
    let list = h.backend.dlq_list(&q).await.expect("dlq_list");
    assert_eq!(list.len(), 1);
    (g, list[0].id.clone())
}

/// Replaying a dead letter delivers it to its group again (attempts start over) and removes
/// it from the dead-letter queue.
pub async fn replay_from_the_dlq_delivers_again(h: Harness) {
    let (g, id) = one_dead_letter(&h, "replay", 5).await;
    h.backend.dlq_replay(&id).await.expect("dlq_replay");
    let d = h
        .receive_n(&g, 1)
        .await
        .pop()
        .expect("replayed event delivered");
    assert_eq!((number(&d), d.attempt), (5, 1));
    h.backend.ack(&d.receipt).await.expect("ack");
    let gone = h.backend.dlq_get(&id).await;
    assert!(
        matches!(gone, Err(Error::NotFound { .. })),
        "replayed entry removed: {gone:?}"
    );
    h.cleanup(&[&g]).await;
}

/// Purge deletes the named dead letters, or all of a group's.
pub async fn purge_removes_dead_letters(h: Harness) {
    let (g, id) = one_dead_letter(&h, "purge", 1).await;
    assert_eq!(
        h.backend
            .dlq_purge(&g, std::slice::from_ref(&id))
            .await
            .expect("purge"),
        1
    );
    assert!(matches!(
        h.backend.dlq_get(&id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(h.backend.dlq_purge(&g, &[]).await.expect("purge all"), 0);
    h.cleanup(&[&g]).await;
}

fn keyed(h: &Harness, key: &str, n: u32) -> Outgoing {
    let mut e = event(n);
    e.set_extension(
        crate::EXT_PARTITION_KEY,
        flotilla_core::event::ExtensionValue::String(key.into()),
    )
    .expect("partitionkey is a valid extension name");
    Outgoing::new(h.topic("order", "e"), e)
}

/// Events sharing a `partitionkey` go out one at a time, in publish order, even across a
/// nack; other keys are not held up.
pub async fn same_key_events_are_delivered_in_order_one_at_a_time(h: Harness) {
    if !h.backend.capabilities().per_key_order {
        return h.exception("per-key order");
    }
    let g = h.group("order", "g");
    h.declare(&g, h.topic("order", "e").as_str()).await;
    h.publish(vec![
        keyed(&h, "a", 1),
        keyed(&h, "a", 2),
        keyed(&h, "b", 10),
        keyed(&h, "a", 3),
    ])
    .await;
    let first = h.receive_n(&g, 2).await;
    let mut nums: Vec<u64> = first.iter().map(number).collect();
    nums.sort_unstable();
    assert_eq!(nums, [1, 10], "one event per key in flight");
    assert!(h.receive(&g, 10, SHORT).await.is_empty(), "a2 waits for a1");
    for d in &first {
        if number(d) == 1 {
            h.backend
                .nack(&d.receipt, Duration::ZERO)
                .await
                .expect("nack");
        } else {
            h.backend.ack(&d.receipt).await.expect("ack");
        }
    }
    let mut order = Vec::new();
    while order.len() < 3 {
        let d = h.receive_n(&g, 1).await.pop().expect("next event of key a");
        order.push(number(&d));
        h.backend.ack(&d.receipt).await.expect("ack");
    }
    assert_eq!(
        order,
        [1, 2, 3],
        "a nacked event keeps its place in its key's order"
    );
    h.cleanup(&[&g]).await;
}

/// An event published with `not_before` is delivered at that time, not before.
pub async fn delayed_publish_is_not_delivered_before_its_time(h: Harness) {
    let (t, g) = (h.topic("delay", "e"), h.group("delay", "g"));
    h.declare(&g, t.as_str()).await;
    let delay = Duration::from_millis(1500);
    let out = Outgoing::new(t, event(4)).deliver_after(delay);
    let published = Instant::now();
    if !h.backend.capabilities().delayed_publish {
        let r = h.backend.publish(vec![out]).await;
        assert!(
            matches!(r, Err(Error::Unsupported { .. })),
            "refused, not ignored: {r:?}"
        );
        h.exception("delayed publish");
        return h.cleanup(&[&g]).await;
    }
    h.publish(vec![out]).await;
    assert!(
        h.receive(&g, 1, SHORT).await.is_empty(),
        "not delivered early"
    );
    let d = h
        .receive_n(&g, 1)
        .await
        .pop()
        .expect("delivered at its time");
    assert!(
        published.elapsed() + EARLY_SLACK >= delay,
        "after {:?}",
        published.elapsed()
    );
    h.backend.ack(&d.receipt).await.expect("ack");
    h.cleanup(&[&g]).await;
}

/// Publishing the same `(source, id)` again within the window is answered `Duplicate` and
/// delivered once.
pub async fn duplicate_publish_within_the_window_is_dropped(h: Harness) {
    let (t, g) = (h.topic("dedupe", "e"), h.group("dedupe", "g"));
    h.declare(&g, t.as_str()).await;
    let e = event(8);
    h.publish(vec![Outgoing::new(t.clone(), e.clone())]).await;
    let again = h
        .backend
        .publish(vec![Outgoing::new(t, e)])
        .await
        .expect("publish");
    if !h.backend.capabilities().dedupe {
        h.exception("publisher dedupe");
        return h.cleanup(&[&g]).await;
    }
    assert_eq!(again, [PublishOutcome::Duplicate]);
    let d = h.receive_n(&g, 1).await.pop().expect("delivered once");
    h.backend.ack(&d.receipt).await.expect("ack");
    assert!(
        h.receive(&g, 1, SHORT).await.is_empty(),
        "the duplicate is not delivered"
    );
    h.cleanup(&[&g]).await;
}

/// A group is bound to one pattern; declaring it again with another is a conflict, with the
/// same one a no-op.
pub async fn redeclaring_a_group_with_another_pattern_conflicts(h: Harness) {
    let g = h.group("redeclare", "g");
    let t = h.topic("redeclare", "a");
    h.declare(&g, t.as_str()).await;
    h.declare(&g, t.as_str()).await;
    let other = GroupSpec {
        name: g.clone(),
        pattern: h.topic("redeclare", "b").into(),
    };
    let r = h.backend.declare_group(&other).await;
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    h.cleanup(&[&g]).await;
}
