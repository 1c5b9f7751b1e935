//! The event-sourced `Order` aggregate (`order-<id>`): created with its items, checked out by
//! the `place-order` saga, then confirmed or cancelled; payment outcomes announced on the bus
//! are recorded on it as they arrive.

use flotilla::eventsourcing::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// One ordered line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The product.
    pub sku: String,
    /// Units.
    pub quantity: u64,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not created.
    #[default]
    Absent,
    /// Created, its checkout running.
    Pending,
    /// Stock reserved and paid.
    Confirmed,
    /// Turned back: nothing reserved or taken remains.
    Cancelled,
}

/// An order as its stream says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where it stands.
    pub status: Status,
    /// Who ordered.
    pub user_id: String,
    /// What.
    pub items: Vec<Item>,
    /// The `place-order` saga instance checking it out.
    pub saga: Option<String>,
    /// The last payment outcome announced for it (`processed` or `failed`).
    pub payment: Option<String>,
    /// Why it was cancelled.
    pub reason: Option<String>,
}

/// What a caller asks of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Creates it.
    Create {
        /// Who orders.
        user_id: String,
        /// What.
        items: Vec<Item>,
    },
    /// Records the saga checking it out.
    StartCheckout {
        /// Its id.
        saga: String,
    },
    /// Records a payment outcome (`processed` or `failed`).
    RecordPayment {
        /// The outcome.
        outcome: String,
    },
    /// Confirms it.
    Confirm,
    /// Cancels it.
    Cancel {
        /// Why.
        reason: String,
    },
}

/// What an order's stream records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// Created.
    OrderCreated {
        /// Who ordered.
        user_id: String,
    },
    /// Lines added.
    ItemsAdded {
        /// The lines.
        items: Vec<Item>,
    },
    /// Its checkout started.
    CheckoutStarted {
        /// The saga instance.
        saga: String,
    },
    /// A payment outcome arrived.
    PaymentRecorded {
        /// `processed` or `failed`.
        outcome: String,
    },
    /// Confirmed.
    OrderConfirmed,
    /// Cancelled.
    OrderCancelled {
        /// Why.
        reason: String,
    },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::OrderCreated { .. } => "OrderCreated",
            Event::ItemsAdded { .. } => "ItemsAdded",
            Event::CheckoutStarted { .. } => "CheckoutStarted",
            Event::PaymentRecorded { .. } => "PaymentRecorded",
            Event::OrderConfirmed => "OrderConfirmed",
            Event::OrderCancelled { .. } => "OrderCancelled",
        }
    }
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Create on an existing id.
    #[error("the order already exists")]
    Exists,
    /// Anything else on a missing id.
    #[error("no such order")]
    NotFound,
    /// The order already ended the other way.
    #[error("the order is already {0:?}")]
    Ended(Status),
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = Command;
    type Event = Event;
    type Error = Refused;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Refused> {
        use Status::*;
        match (self.status, command) {
            (Absent, Command::Create { user_id, items }) => Ok(vec![
                Event::OrderCreated {
                    user_id: user_id.clone(),
                },
                Event::ItemsAdded {
                    items: items.clone(),
                },
            ]),
            (_, Command::Create { .. }) => Err(Refused::Exists),
            (Absent, _) => Err(Refused::NotFound),
            (_, Command::StartCheckout { saga }) if self.saga.as_ref() == Some(saga) => Ok(vec![]),
            (Pending, Command::StartCheckout { saga }) => {
                Ok(vec![Event::CheckoutStarted { saga: saga.clone() }])
            }
            (s, Command::StartCheckout { .. }) => Err(Refused::Ended(s)),
            (_, Command::RecordPayment { outcome }) if self.payment.as_ref() == Some(outcome) => {
                Ok(vec![])
            }
            (_, Command::RecordPayment { outcome }) => Ok(vec![Event::PaymentRecorded {
                outcome: outcome.clone(),
            }]),
            (Pending, Command::Confirm) => Ok(vec![Event::OrderConfirmed]),
            (Confirmed, Command::Confirm) | (Cancelled, Command::Cancel { .. }) => Ok(vec![]),
            (Pending, Command::Cancel { reason }) => Ok(vec![Event::OrderCancelled {
                reason: reason.clone(),
            }]),
            (s, Command::Confirm | Command::Cancel { .. }) => Err(Refused::Ended(s)),
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::OrderCreated { user_id } => {
                self.status = Status::Pending;
                self.user_id = user_id.clone();
            }
            Event::ItemsAdded { items } => self.items.extend(items.iter().cloned()),
            Event::CheckoutStarted { saga } => self.saga = Some(saga.clone()),
            Event::PaymentRecorded { outcome } => self.payment = Some(outcome.clone()),
            Event::OrderConfirmed => self.status = Status::Confirmed,
            Event::OrderCancelled { reason } => {
                self.status = Status::Cancelled;
                self.reason = Some(reason.clone());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use flotilla::eventsourcing::aggregate::testing::given;

    use super::*;

    fn created() -> Vec<Event> {
        vec![
            Event::OrderCreated {
                user_id: "u".into(),
            },
            Event::ItemsAdded {
                items: vec![Item {
                    sku: "mug".into(),
                    quantity: 1,
                }],
            },
        ]
    }

    #[test]
    fn a_cancelled_order_cannot_be_confirmed() {
        let mut history = created();
        history.push(Event::OrderCancelled {
            reason: "payment".into(),
        });
        given::<Order>(history)
            .when(Command::Confirm)
            .then_refused(|e| *e == Refused::Ended(Status::Cancelled));
    }

    #[test]
    fn confirming_twice_records_once() {
        let mut history = created();
        history.push(Event::OrderConfirmed);
        given::<Order>(history).when(Command::Confirm).then([]);
    }
}
