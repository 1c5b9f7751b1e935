//! The `Payment` aggregate (`payment-<charge key>`): one charge, keyed by the charging call's
//! idempotency key, and its refund.

use flotilla::eventsourcing::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// Where a payment stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Payment {
    /// Nothing recorded.
    #[default]
    Absent,
    /// The money was taken.
    Captured {
        /// The order paid.
        order_id: String,
        /// Cents.
        amount: u64,
    },
    /// The provider said no; nothing was taken.
    Declined {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Taken, then given back.
    Refunded {
        /// The order.
        order_id: String,
        /// Cents.
        amount: u64,
    },
    /// Refunded before any charge arrived: a late charge under this key is refused.
    Voided,
}

/// What a caller asks of a payment.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Record a capture.
    Capture {
        /// The order.
        order_id: String,
        /// Cents.
        amount: u64,
    },
    /// Record a decline.
    Decline {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Give the money back (nothing to do when none was taken).
    Refund,
}

/// What a payment's stream records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[allow(clippy::enum_variant_names)] // the variants are the stored event type names
pub enum Event {
    /// Taken.
    PaymentCaptured {
        /// The order.
        order_id: String,
        /// Cents.
        amount: u64,
    },
    /// Declined.
    PaymentDeclined {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// Given back.
    PaymentRefunded,
    /// Closed before a charge arrived.
    PaymentVoided,
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::PaymentCaptured { .. } => "PaymentCaptured",
            Event::PaymentDeclined { .. } => "PaymentDeclined",
            Event::PaymentRefunded => "PaymentRefunded",
            Event::PaymentVoided => "PaymentVoided",
        }
    }
}

/// A charge under a key that already has an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payment is already settled")]
pub struct Settled;

impl Payment {
    /// The order it belongs to, once known.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Payment::Captured { order_id, .. }
            | Payment::Declined { order_id, .. }
            | Payment::Refunded { order_id, .. } => Some(order_id),
            Payment::Absent | Payment::Voided => None,
        }
    }
}

impl Aggregate for Payment {
    const CATEGORY: &'static str = "payment";
    type Command = Command;
    type Event = Event;
    type Error = Settled;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Settled> {
        match (self, command) {
            (Payment::Absent, Command::Capture { order_id, amount }) => {
                Ok(vec![Event::PaymentCaptured {
                    order_id: order_id.clone(),
                    amount: *amount,
                }])
            }
            (Payment::Absent, Command::Decline { order_id, reason }) => {
                Ok(vec![Event::PaymentDeclined {
                    order_id: order_id.clone(),
                    reason: reason.clone(),
                }])
            }
            (Payment::Absent, Command::Refund) => Ok(vec![Event::PaymentVoided]),
            (Payment::Captured { .. }, Command::Refund) => Ok(vec![Event::PaymentRefunded]),
            (_, Command::Refund) => Ok(vec![]),
            (_, Command::Capture { .. } | Command::Decline { .. }) => Err(Settled),
        }
    }

    fn evolve(self, event: &Event) -> Self {
        match (self, event) {
            (_, Event::PaymentCaptured { order_id, amount }) => Payment::Captured {
                order_id: order_id.clone(),
                amount: *amount,
            },
            (_, Event::PaymentDeclined { order_id, reason }) => Payment::Declined {
                order_id: order_id.clone(),
                reason: reason.clone(),
            },
            (Payment::Captured { order_id, amount }, Event::PaymentRefunded) => {
                Payment::Refunded { order_id, amount }
            }
            (state, Event::PaymentRefunded) => state,
            (_, Event::PaymentVoided) => Payment::Voided,
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla::eventsourcing::aggregate::testing::given;

    use super::*;

    fn capture() -> Command {
        Command::Capture {
            order_id: "o".into(),
            amount: 5,
        }
    }

    #[test]
    fn a_refund_before_the_charge_voids_the_key_and_the_late_charge_is_refused() {
        given::<Payment>([])
            .when(Command::Refund)
            .then([Event::PaymentVoided]);
        given::<Payment>([Event::PaymentVoided])
            .when(capture())
            .then_refused(|_| true);
    }

    #[test]
    fn a_declined_payment_has_nothing_to_refund() {
        let declined = Event::PaymentDeclined {
            order_id: "o".into(),
            reason: "no".into(),
        };
        given::<Payment>([declined]).when(Command::Refund).then([]);
    }
}
