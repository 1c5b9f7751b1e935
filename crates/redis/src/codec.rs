//! Decoding what the scripts answer: leased entries and dead letters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_bus::{DeadLetter, Delivery, Error as BusError, FailureReason, GroupName, Receipt};
use flotilla_core::{CloudEvent, TopicName};
use redis::Value;

fn corrupt(what: &str, detail: impl std::fmt::Display) -> BusError {
    BusError::Backend(format!("Redis answered an unexpected {what}: {detail}"))
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

pub(crate) fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// The value of `name` in a flat field list `[k1, v1, k2, v2, ...]`.
fn field(fields: &[Value], name: &str) -> Option<String> {
    fields
        .chunks(2)
        .find(|kv| text(&kv[0]).as_deref() == Some(name))
        .and_then(|kv| kv.get(1).and_then(text))
}

/// The time a stream id (`<ms>-<seq>`) was assigned.
pub(crate) fn id_time(id: &str) -> SystemTime {
    let ms = id
        .split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// One leased entry: `{id, lease number, fields}`.
pub(crate) fn delivery(group: &GroupName, v: &Value) -> Result<Delivery, BusError> {
    let parts = array(v).ok_or_else(|| corrupt("entry", format!("{v:?}")))?;
    let [id, n, fields] = parts else {
        return Err(corrupt("entry", format!("{v:?}")));
    };
    let id = text(id).ok_or_else(|| corrupt("entry id", format!("{id:?}")))?;
    let n = int(n).ok_or_else(|| corrupt("lease number", format!("{n:?}")))?;
    let fields = array(fields).ok_or_else(|| corrupt("fields", &id))?;
    let (topic, event) = topic_event(fields, &id)?;
    Ok(Delivery {
        receipt: Receipt {
            group: group.clone(),
            token: format!("{id} {n}"),
        },
        topic,
        event,
        attempt: u32::try_from(n).unwrap_or(u32::MAX),
        published_at: id_time(&id),
    })
}

fn topic_event(fields: &[Value], id: &str) -> Result<(TopicName, CloudEvent), BusError> {
    let t = field(fields, "t").ok_or_else(|| corrupt("entry without topic", id))?;
    let e = field(fields, "e").ok_or_else(|| corrupt("entry without event", id))?;
    let topic = TopicName::new(t).map_err(|e| corrupt("topic", e))?;
    let event = CloudEvent::from_json_slice(e.as_bytes()).map_err(|e| corrupt("event", e))?;
    Ok((topic, event))
}

/// A receipt token's entry id and lease number.
pub(crate) fn parse_token(token: &str) -> Result<(&str, &str), BusError> {
    token
        .split_once(' ')
        .filter(|(id, n)| id.contains('-') && n.parse::<u64>().is_ok())
        .ok_or_else(|| {
            BusError::InvalidInput(format!(
                "receipt token {token:?} is not a Redis bus receipt"
            ))
        })
}

/// A DLQ stream entry (`[id, fields]` as XRANGE answers it).
pub(crate) fn dead_letter(v: &Value) -> Result<DeadLetter, BusError> {
    let parts = array(v).ok_or_else(|| corrupt("dead letter", format!("{v:?}")))?;
    let [id, fields] = parts else {
        return Err(corrupt("dead letter", format!("{v:?}")));
    };
    let id = text(id).ok_or_else(|| corrupt("dead letter id", format!("{id:?}")))?;
    let fields = array(fields).ok_or_else(|| corrupt("dead letter fields", &id))?;
    let (topic, event) = topic_event(fields, &id)?;
    let get = |k: &str| field(fields, k).ok_or_else(|| corrupt("dead letter field", k));
    let group = GroupName::new(get("g")?).map_err(|e| corrupt("group", e))?;
    let reason = match get("r")?.as_str() {
        "rejected" => FailureReason::Rejected,
        _ => FailureReason::MaxDeliveries,
    };
    let published_ms: u64 = get("p")?.parse().map_err(|e| corrupt("time", e))?;
    Ok(DeadLetter {
        group,
        topic,
        event,
        reason,
        attempts: get("a")?.parse().map_err(|e| corrupt("attempts", e))?,
        last_error: get("x")?,
        published_at: UNIX_EPOCH + Duration::from_millis(published_ms),
        dead_lettered_at: id_time(&id),
        id,
    })
}

pub(crate) fn reason_code(r: FailureReason) -> &'static str {
    match r {
        FailureReason::MaxDeliveries => "max_deliveries",
        FailureReason::Rejected => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_leased_entry_decodes_with_its_receipt_and_attempt() {
        let event = CloudEvent::new("/s", "t").to_json_value().to_string();
        let v = Value::Array(vec![
            bulk("1700000000000-3"),
            Value::Int(2),
            Value::Array(vec![bulk("t"), bulk("a.b"), bulk("e"), bulk(&event)]),
        ]);
        let g = GroupName::new("g").unwrap();
        let d = delivery(&g, &v).unwrap();
        assert_eq!((d.attempt, d.topic.as_str()), (2, "a.b"));
        assert_eq!(
            parse_token(&d.receipt.token).unwrap(),
            ("1700000000000-3", "2")
        );
        assert_eq!(
            d.published_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
        );
    }

    #[test]
    fn foreign_receipts_and_entries_are_refused() {
        assert!(parse_token("nonsense").is_err());
        assert!(parse_token("1-0 x").is_err());
        assert!(delivery(&GroupName::new("g").unwrap(), &Value::Int(1)).is_err());
    }
}
