//! Exchanges, queues and bindings.
//!
//! - `<prefix>.events`: durable topic exchange every event is published to, routing key =
//!   topic. Bus patterns map onto AMQP binding keys: `*` stays, a final `>` (one or more
//!   segments) becomes `*.#`.
//! - `<prefix>.g.<group>`: durable quorum queue per group, bound with the group's pattern.
//!   Its broker-side dead-letter target is the group's DLQ queue (strategy at-least-once),
//!   so nothing the broker gives up on (the `x-delivery-limit` backstop) is dropped.
//! - `<prefix>.dlq.<group>`: quorum queue of the group's dead letters.
//! - `<prefix>.r.<group>.<ms>`: retry queues, one per delay bucket: `x-message-ttl` = the
//!   bucket, dead-lettering back to the group queue when it expires. One queue per delay keeps
//!   every message in a queue with the same TTL, so none waits behind a longer one (per-message
//!   TTL only expires at the head of a queue), and the group queue never blocks. Idle retry
//!   queues expire (`x-expires`).
//! - `<prefix>.grp.<group>`: a marker exchange whose `alternate-exchange` argument names the
//!   group's pattern; RabbitMQ refuses to re-declare it with another value, which is how a
//!   group re-declared with another pattern is detected across processes.

use flotilla_bus::GroupName;
use flotilla_core::TopicPattern;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::Options;

/// Ten minutes past its TTL an unused retry queue is deleted by the broker.
const RETRY_QUEUE_IDLE_MS: u64 = 600_000;

pub(crate) fn exchange(o: &Options) -> String {
    format!("{}.events", o.prefix)
}

pub(crate) fn group_queue(o: &Options, g: &GroupName) -> String {
    format!("{}.g.{g}", o.prefix)
}

pub(crate) fn dlq_queue(o: &Options, g: &GroupName) -> String {
    format!("{}.dlq.{g}", o.prefix)
}

pub(crate) fn retry_queue(o: &Options, g: &GroupName, bucket_ms: u64) -> String {
    format!("{}.r.{g}.{bucket_ms}", o.prefix)
}

/// Headers exchange routing delayed publishes to their delay queue by bucket.
pub(crate) fn delay_exchange(o: &Options) -> String {
    format!("{}.delay", o.prefix)
}

pub(crate) fn delay_queue(o: &Options, bucket_ms: u64) -> String {
    format!("{}.delay.{bucket_ms}", o.prefix)
}

/// The header a delayed publish carries to pick its delay queue.
pub(crate) const DELAY_BUCKET: &str = "flotilla-delay-ms";

/// A delay queue holds delayed publishes for its bucket, then dead-letters them to the
/// events exchange. They are published with routing key `""` (which no group binding
/// matches) and the topic in `CC`; dead-lettering keeps both keys, so the topic routes.
/// At-most-once dead-lettering here: an event whose topic no group matches is dropped at
/// its due time, exactly as an undelayed publish to it would be.
pub(crate) fn delay_queue_args(o: &Options, bucket_ms: u64) -> FieldTable {
    let ttl = i64::try_from(bucket_ms).unwrap_or(i64::MAX);
    let idle = i64::try_from(bucket_ms + RETRY_QUEUE_IDLE_MS).unwrap_or(i64::MAX);
    table(vec![
        ("x-queue-type", s("quorum")),
        ("x-dead-letter-exchange", s(&exchange(o))),
        ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
        ("x-expires", AMQPValue::LongLongInt(idle)),
    ])
}

pub(crate) fn delay_binding(bucket_ms: u64) -> FieldTable {
    let b = i64::try_from(bucket_ms).unwrap_or(i64::MAX);
    table(vec![
        ("x-match", s("all")),
        (DELAY_BUCKET, AMQPValue::LongLongInt(b)),
    ])
}

pub(crate) fn marker_exchange(o: &Options, g: &GroupName) -> String {
    format!("{}.grp.{g}", o.prefix)
}

/// The AMQP binding key for a bus pattern.
pub(crate) fn binding_key(p: &TopicPattern) -> String {
    let s = p.as_str();
    match s.strip_suffix('>') {
        Some(head) => format!("{head}*.#"),
        None => s.to_owned(),
    }
}

/// The retry bucket for a delay: the delay rounded up so that it is at most 12.5% later
/// (three significant bits), which bounds the number of retry queues per group.
pub(crate) fn bucket_ms(delay_ms: u64) -> u64 {
    if delay_ms <= 16 {
        return delay_ms.max(1);
    }
    let step = 1u64 << (63 - delay_ms.leading_zeros() - 3);
    delay_ms.div_ceil(step) * step
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.to_owned()))
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(k), v);
    }
    t
}

fn quorum_base(dlx_target: &str) -> Vec<(&'static str, AMQPValue)> {
    vec![
        ("x-queue-type", s("quorum")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(dlx_target)),
        ("x-dead-letter-strategy", s("at-least-once")),
        ("x-overflow", s("reject-publish")),
    ]
}

pub(crate) fn group_queue_args(o: &Options, g: &GroupName) -> FieldTable {
    let mut args = quorum_base(&dlq_queue(o, g));
    let limit = i64::from(o.delivery_limit);
    args.push(("x-delivery-limit", AMQPValue::LongLongInt(limit)));
    table(args)
}

pub(crate) fn dlq_queue_args() -> FieldTable {
    table(vec![("x-queue-type", s("quorum"))])
}

pub(crate) fn retry_queue_args(o: &Options, g: &GroupName, bucket_ms: u64) -> FieldTable {
    let mut args = quorum_base(&group_queue(o, g));
    let ttl = i64::try_from(bucket_ms).unwrap_or(i64::MAX);
    let idle = i64::try_from(bucket_ms + RETRY_QUEUE_IDLE_MS).unwrap_or(i64::MAX);
    args.push(("x-message-ttl", AMQPValue::LongLongInt(ttl)));
    args.push(("x-expires", AMQPValue::LongLongInt(idle)));
    table(args)
}

pub(crate) fn marker_args(o: &Options, p: &TopicPattern) -> FieldTable {
    table(vec![(
        "alternate-exchange",
        s(&format!("{}.pattern.{p}", o.prefix)),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_binding_keys_with_the_same_meaning() {
        let k = |p: &str| binding_key(&TopicPattern::new(p).unwrap());
        assert_eq!(k("orders.created"), "orders.created");
        assert_eq!(k("orders.*"), "orders.*");
        assert_eq!(k("orders.>"), "orders.*.#");
        assert_eq!(k(">"), "*.#");
    }

    #[test]
    fn buckets_round_up_by_at_most_an_eighth() {
        for d in [1, 16, 17, 100, 999, 1000, 1001, 30_000, 123_457] {
            let b = bucket_ms(d);
            assert!(b >= d && b * 8 <= d * 9 + 8, "{d} -> {b}");
        }
        assert_eq!((bucket_ms(100), bucket_ms(1000)), (104, 1024));
    }
}
