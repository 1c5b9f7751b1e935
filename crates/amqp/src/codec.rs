//! Message properties and headers the backend writes and reads back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_bus::{DeadLetter, Error as BusError, FailureReason, GroupName};
use flotilla_core::{CloudEvent, TopicName};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

pub(crate) const TOPIC: &str = "flotilla-topic";
pub(crate) const ATTEMPTS: &str = "flotilla-attempts";
pub(crate) const PUBLISHED: &str = "flotilla-published-ms";
pub(crate) const GROUP: &str = "flotilla-group";
pub(crate) const REASON: &str = "flotilla-reason";
pub(crate) const ERROR: &str = "flotilla-error";
pub(crate) const DEAD_AT: &str = "flotilla-dead-lettered-ms";

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
}

pub(crate) fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.to_owned()))
}

/// Headers builder.
pub(crate) fn headers(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(k), v);
    }
    t
}

/// Persistent JSON message properties with `headers`.
pub(crate) fn properties(id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/cloudevents+json"))
        .with_message_id(ShortString::from(id))
        .with_headers(headers)
}

pub(crate) fn header<'a>(p: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    p.headers().as_ref()?.inner().get(name)
}

pub(crate) fn header_str(p: &BasicProperties, name: &str) -> Option<String> {
    match header(p, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub(crate) fn header_int(p: &BasicProperties, name: &str) -> Option<i64> {
    match header(p, name)? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => Some(i64::from(*i)),
        AMQPValue::Timestamp(i) => i64::try_from(*i).ok(),
        _ => None,
    }
}

/// The topic, event and publish time of a message this backend wrote.
pub(crate) fn event_of(
    p: &BasicProperties,
    body: &[u8],
) -> Result<(TopicName, CloudEvent, SystemTime), String> {
    let topic = header_str(p, TOPIC).ok_or("no topic header")?;
    let topic = TopicName::new(topic).map_err(|e| e.to_string())?;
    let event = CloudEvent::from_json_slice(body).map_err(|e| e.to_string())?;
    let published = header_int(p, PUBLISHED).map_or(UNIX_EPOCH, from_ms);
    Ok((topic, event, published))
}

/// Deliveries so far: the attempts carried over by a retry copy plus the quorum queue's own
/// count of returned deliveries (lease expiry, crash), plus this one.
pub(crate) fn attempt_of(p: &BasicProperties) -> u32 {
    let carried = header_int(p, ATTEMPTS).unwrap_or(0);
    let returned = header_int(p, "x-delivery-count").unwrap_or(0);
    u32::try_from(carried + returned + 1).unwrap_or(u32::MAX)
}

pub(crate) fn dead_letter_headers(d: &DeadLetter) -> FieldTable {
    let reason = match d.reason {
        FailureReason::MaxDeliveries => "max_deliveries",
        FailureReason::Rejected => "rejected",
    };
    headers(vec![
        (TOPIC, text(d.topic.as_str())),
        (GROUP, text(d.group.as_str())),
        (REASON, text(reason)),
        (ATTEMPTS, AMQPValue::LongLongInt(i64::from(d.attempts))),
        (ERROR, text(&d.last_error)),
        (PUBLISHED, AMQPValue::LongLongInt(unix_ms(d.published_at))),
        (DEAD_AT, AMQPValue::LongLongInt(unix_ms(d.dead_lettered_at))),
    ])
}

/// A dead letter read back from a DLQ queue. Messages the broker dead-lettered itself (the
/// delivery-limit backstop) carry no failure headers; they read as `max_deliveries` with the
/// broker's reason as the error.
pub(crate) fn dead_letter_of(
    group: &GroupName,
    p: &BasicProperties,
    body: &[u8],
) -> Result<DeadLetter, BusError> {
    let id = p
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let (topic, event, published_at) =
        event_of(p, body).map_err(|e| BusError::Backend(format!("dead letter {id:?}: {e}")))?;
    let reason = match header_str(p, REASON).as_deref() {
        Some("rejected") => FailureReason::Rejected,
        _ => FailureReason::MaxDeliveries,
    };
    let broker_reason =
        header_str(p, "x-first-death-reason").map(|r| format!("dead-lettered by RabbitMQ: {r}"));
    Ok(DeadLetter {
        id,
        group: group.clone(),
        topic,
        event,
        reason,
        attempts: u32::try_from(header_int(p, ATTEMPTS).unwrap_or(0)).unwrap_or(u32::MAX),
        last_error: header_str(p, ERROR).or(broker_reason).unwrap_or_default(),
        published_at,
        dead_lettered_at: header_int(p, DEAD_AT).map_or(published_at, from_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_add_carried_and_broker_returned_deliveries() {
        let p = BasicProperties::default().with_headers(headers(vec![
            (ATTEMPTS, AMQPValue::LongLongInt(2)),
            ("x-delivery-count", AMQPValue::LongInt(1)),
        ]));
        assert_eq!(attempt_of(&p), 4);
        assert_eq!(attempt_of(&BasicProperties::default()), 1);
    }

    #[test]
    fn dead_letters_round_trip_through_headers() {
        let d = DeadLetter {
            id: "01".into(),
            group: GroupName::new("billing").unwrap(),
            topic: TopicName::new("orders.created").unwrap(),
            event: CloudEvent::new("/s", "t"),
            reason: FailureReason::Rejected,
            attempts: 3,
            last_error: "boom".into(),
            published_at: from_ms(1_700_000_000_000),
            dead_lettered_at: from_ms(1_700_000_001_000),
        };
        let p = properties("01", dead_letter_headers(&d));
        let body = d.event.to_json_value().to_string();
        assert_eq!(dead_letter_of(&d.group, &p, body.as_bytes()).unwrap(), d);
    }
}
