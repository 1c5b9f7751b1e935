//! The `Reservation` aggregate (`reservation-<key>`): what one reserving call holds, so a
//! repeat answers the same, and a release that overtakes a slow reserve is not undone by it.

use flotilla::eventsourcing::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// One line held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The product.
    pub sku: String,
    /// Units.
    pub quantity: u64,
    /// Unit price in cents when reserved.
    pub price: u64,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reservation {
    /// Nothing recorded.
    #[default]
    Absent,
    /// The stock is held.
    Held {
        /// The lines.
        lines: Vec<Line>,
    },
    /// It could not be made.
    Refused {
        /// Why.
        reason: String,
    },
    /// Its stock was freed (or it was released before it was made).
    Released,
}

/// What a caller asks of a reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Records the lines held.
    Hold(Vec<Line>),
    /// Records why it could not be made.
    Refuse(String),
    /// Records that its stock is freed.
    Release,
}

/// What a reservation's stream records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[allow(clippy::enum_variant_names)] // the variants are the stored event type names
pub enum Event {
    /// Stock held.
    ReservationHeld {
        /// The lines.
        lines: Vec<Line>,
    },
    /// Not made.
    ReservationRefused {
        /// Why.
        reason: String,
    },
    /// Freed.
    ReservationReleased,
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::ReservationHeld { .. } => "ReservationHeld",
            Event::ReservationRefused { .. } => "ReservationRefused",
            Event::ReservationReleased => "ReservationReleased",
        }
    }
}

/// Why a command is refused: the reservation already ended another way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reservation is already {0}")]
pub struct Ended(pub &'static str);

impl Aggregate for Reservation {
    const CATEGORY: &'static str = "reservation";
    type Command = Command;
    type Event = Event;
    type Error = Ended;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Ended> {
        match (self, command) {
            (Reservation::Absent, Command::Hold(lines)) => Ok(vec![Event::ReservationHeld {
                lines: lines.clone(),
            }]),
            (Reservation::Absent, Command::Refuse(reason)) => Ok(vec![Event::ReservationRefused {
                reason: reason.clone(),
            }]),
            (Reservation::Absent | Reservation::Held { .. }, Command::Release) => {
                Ok(vec![Event::ReservationReleased])
            }
            (Reservation::Released | Reservation::Refused { .. }, Command::Release) => Ok(vec![]),
            (Reservation::Held { .. }, _) => Err(Ended("held")),
            (Reservation::Refused { .. }, _) => Err(Ended("refused")),
            (Reservation::Released, _) => Err(Ended("released")),
        }
    }

    fn evolve(self, event: &Event) -> Self {
        match event {
            Event::ReservationHeld { lines } => Reservation::Held {
                lines: lines.clone(),
            },
            Event::ReservationRefused { reason } => Reservation::Refused {
                reason: reason.clone(),
            },
            Event::ReservationReleased => Reservation::Released,
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla::eventsourcing::aggregate::testing::given;

    use super::*;

    #[test]
    fn a_release_before_the_hold_keeps_the_late_hold_out() {
        given::<Reservation>([Event::ReservationReleased])
            .when(Command::Hold(vec![]))
            .then_refused(|e| e.0 == "released");
    }
}
