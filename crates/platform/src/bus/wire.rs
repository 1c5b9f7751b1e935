//! The bus API's JSON shapes, as the contract's types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_bus::{DeadLetter, Delivery, FailureReason, GroupName, Receipt};
use flotilla_core::{CloudEvent, TopicName};
use serde::Deserialize;

/// Milliseconds since the Unix epoch, as the API writes times.
fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A whole number of milliseconds, rounded up so a delay or lease is never shortened.
pub(super) fn millis(d: Duration) -> u64 {
    let ms = d.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[derive(Debug, Deserialize)]
pub(super) struct DeliveryWire {
    receipt: String,
    topic: TopicName,
    attempt: u32,
    published_at_ms: u64,
    event: CloudEvent,
}

impl DeliveryWire {
    pub(super) fn into_delivery(self, group: &GroupName) -> Delivery {
        Delivery {
            receipt: Receipt {
                group: group.clone(),
                token: self.receipt,
            },
            topic: self.topic,
            event: self.event,
            attempt: self.attempt,
            published_at: time(self.published_at_ms),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Deliveries {
    pub(super) deliveries: Vec<DeliveryWire>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DeadLetterWire {
    id: String,
    group: GroupName,
    topic: TopicName,
    reason: FailureReason,
    attempts: u32,
    last_error: String,
    published_at_ms: u64,
    dead_lettered_at_ms: u64,
    event: CloudEvent,
}

impl From<DeadLetterWire> for DeadLetter {
    fn from(w: DeadLetterWire) -> Self {
        Self {
            id: w.id,
            group: w.group,
            topic: w.topic,
            event: w.event,
            reason: w.reason,
            attempts: w.attempts,
            last_error: w.last_error,
            published_at: time(w.published_at_ms),
            dead_lettered_at: time(w.dead_lettered_at_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
