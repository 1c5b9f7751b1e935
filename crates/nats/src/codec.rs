//! What the backend writes into and reads back from the stream: consumer names for groups,
//! receipt tokens, and dead-letter records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_bus::{DeadLetter, Error as BusError, FailureReason, GroupName};
use flotilla_core::{CloudEvent, TopicName};
use serde_json::{Value, json};

/// The durable consumer of a group's events. Group names may contain `.`, which consumer
/// names may not, so `_` is doubled and `.` becomes `_d`: injective, and no group's name can
/// end in a lone `_r` (the replay consumer) or `_mover` (the delay mover).
pub(crate) fn consumer_for(group: &GroupName) -> String {
    group.as_str().replace('_', "__").replace('.', "_d")
}

/// The durable consumer of a group's replayed dead letters.
pub(crate) fn replay_consumer_for(group: &GroupName) -> String {
    format!("{}_r", consumer_for(group))
}

/// The group a main consumer name belongs to (`None` for the replay consumers and the mover).
pub(crate) fn group_of_consumer(name: &str) -> Option<GroupName> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match (c, c == '_') {
            (_, false) => out.push(c),
            (_, true) => match chars.next()? {
                '_' => out.push('_'),
                'd' => out.push('.'),
                _ => return None,
            },
        }
    }
    GroupName::new(out).ok()
}

/// The stream sequence a JetStream ack subject (`$JS.ACK.…`, the receipt token) names:
/// token 5 of the 9-token v1 form, token 7 of the v2 form with domain and account hash.
pub(crate) fn stream_seq_of(token: &str) -> Result<u64, BusError> {
    ack_subject_number(token, 1)
}

/// How many times the message had been delivered when this receipt was issued.
pub(crate) fn delivered_of(token: &str) -> Result<u64, BusError> {
    ack_subject_number(token, 0)
}

/// Number `n` after the consumer name in an ack subject.
fn ack_subject_number(token: &str, n: usize) -> Result<u64, BusError> {
    let parts: Vec<&str> = token.split('.').collect();
    let idx = match parts.len() {
        9 => 4 + n,
        len if len >= 11 => 6 + n,
        _ => usize::MAX,
    };
    let ok = parts.first() == Some(&"$JS") && parts.get(1) == Some(&"ACK");
    parts
        .get(idx)
        .filter(|_| ok)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            BusError::InvalidInput(format!(
                "receipt token {token:?} is not a JetStream ack subject"
            ))
        })
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The record stored on `<prefix>.dlq.<group>` for one dead-lettered delivery.
pub(crate) fn encode_dead_letter(d: &DeadLetter) -> Vec<u8> {
    let reason = match d.reason {
        FailureReason::MaxDeliveries => "max_deliveries",
        FailureReason::Rejected => "rejected",
    };
    let v = json!({
        "group": d.group.as_str(),
        "topic": d.topic.as_str(),
        "event": d.event.to_json_value(),
        "reason": reason,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "published_at_ms": unix_ms(d.published_at),
        "dead_lettered_at_ms": unix_ms(d.dead_lettered_at),
    });
    v.to_string().into_bytes()
}

/// Reads a dead-letter record back; `id` is its stream sequence.
pub(crate) fn decode_dead_letter(id: u64, body: &[u8]) -> Result<DeadLetter, BusError> {
    let bad = |what: &str| BusError::Backend(format!("dead letter {id} is corrupt: {what}"));
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let s = |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| bad(k));
    let n = |k: &str| v[k].as_u64().ok_or_else(|| bad(k));
    let reason = match s("reason")?.as_str() {
        "rejected" => FailureReason::Rejected,
        _ => FailureReason::MaxDeliveries,
    };
    Ok(DeadLetter {
        id: id.to_string(),
        group: GroupName::new(s("group")?).map_err(|_| bad("group"))?,
        topic: TopicName::new(s("topic")?).map_err(|_| bad("topic"))?,
        event: CloudEvent::from_json_value(v["event"].clone()).map_err(|e| bad(&e.to_string()))?,
        reason,
        attempts: u32::try_from(n("attempts")?).unwrap_or(u32::MAX),
        last_error: s("last_error")?,
        published_at: from_ms(n("published_at_ms")?),
        dead_lettered_at: from_ms(n("dead_lettered_at_ms")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_round_trip_and_never_collide_with_internal_ones() {
        for g in ["billing", "a.b", "a_b", "a__d", "x-y.z_"] {
            let g = GroupName::new(g).unwrap();
            let name = consumer_for(&g);
            assert!(!name.contains('.'), "{name}");
            assert_eq!(group_of_consumer(&name), Some(g.clone()));
            assert_eq!(group_of_consumer(&replay_consumer_for(&g)), None);
        }
        assert_ne!(
            consumer_for(&GroupName::new("a.b").unwrap()),
            consumer_for(&GroupName::new("a_b").unwrap())
        );
        assert_eq!(group_of_consumer("flotilla_delay_mover"), None);
    }

    #[test]
    fn stream_sequence_is_read_from_both_ack_subject_forms() {
        let v1 = "$JS.ACK.s.c.1.42.7.1700000000.0";
        assert_eq!(stream_seq_of(v1).unwrap(), 42);
        assert_eq!(delivered_of(v1).unwrap(), 1);
        let v2 = "$JS.ACK.dom.hash.s.c.1.43.7.1700000000.0.tok";
        assert_eq!(stream_seq_of(v2).unwrap(), 43);
        assert!(stream_seq_of("$JS.ACK.nope").is_err());
        assert!(stream_seq_of("foo.bar.s.c.1.42.7.1.0").is_err());
    }

    #[test]
    fn dead_letters_round_trip() {
        let d = DeadLetter {
            id: "9".into(),
            group: GroupName::new("billing").unwrap(),
            topic: TopicName::new("orders.created").unwrap(),
            event: CloudEvent::new("/s", "t").with_json(json!({"n": 1})),
            reason: FailureReason::Rejected,
            attempts: 3,
            last_error: "boom".into(),
            published_at: from_ms(1_700_000_000_000),
            dead_lettered_at: from_ms(1_700_000_001_000),
        };
        assert_eq!(decode_dead_letter(9, &encode_dead_letter(&d)).unwrap(), d);
    }
}
