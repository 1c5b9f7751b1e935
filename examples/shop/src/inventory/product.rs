//! The `Product` aggregate (`product-<sku>`): its stock and the reservations holding part of
//! it, keyed by the reserving call's idempotency key so a retried reserve holds stock once.

use std::collections::BTreeMap;

use flotilla::eventsourcing::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A product as its stream says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Whether `ProductCreated` was recorded.
    pub exists: bool,
    /// Display name.
    pub name: String,
    /// Unit price in cents.
    pub price: u64,
    /// Units free to reserve.
    pub available: u64,
    /// Units held, by reservation key.
    pub reserved: BTreeMap<String, u64>,
}

/// What a caller asks of a product.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Lists the product.
    Create {
        /// Display name.
        name: String,
        /// Unit price in cents.
        price: u64,
        /// Units in stock.
        stock: u64,
    },
    /// Adds units.
    Restock {
        /// How many.
        quantity: u64,
    },
    /// Holds units under `key` (once per key).
    Reserve {
        /// The reservation's idempotency key.
        key: String,
        /// How many.
        quantity: u64,
    },
    /// Frees what `key` holds (nothing when it holds nothing).
    Release {
        /// The reservation's idempotency key.
        key: String,
    },
}

/// What a product's stream records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// Listed.
    ProductCreated {
        /// Display name.
        name: String,
        /// Unit price in cents.
        price: u64,
        /// Units in stock.
        stock: u64,
    },
    /// Units added.
    Restocked {
        /// How many.
        quantity: u64,
    },
    /// Units held for a reservation.
    StockReserved {
        /// The reservation's key.
        key: String,
        /// How many.
        quantity: u64,
    },
    /// A reservation's units freed.
    StockReleased {
        /// The reservation's key.
        key: String,
        /// How many.
        quantity: u64,
    },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::ProductCreated { .. } => "ProductCreated",
            Event::Restocked { .. } => "Restocked",
            Event::StockReserved { .. } => "StockReserved",
            Event::StockReleased { .. } => "StockReleased",
        }
    }
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Create on a listed product.
    #[error("the product already exists")]
    Exists,
    /// Anything else on an unlisted one.
    #[error("no such product")]
    NotFound,
    /// Not enough free units.
    #[error("only {available} left, {wanted} wanted")]
    OutOfStock {
        /// Units free.
        available: u64,
        /// Units asked for.
        wanted: u64,
    },
}

impl Product {
    /// Units held by every reservation together.
    pub fn reserved_total(&self) -> u64 {
        self.reserved.values().sum()
    }
}

impl Aggregate for Product {
    const CATEGORY: &'static str = "product";
    type Command = Command;
    type Event = Event;
    type Error = Refused;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Refused> {
        match command {
            Command::Create { .. } if self.exists => Err(Refused::Exists),
            Command::Create { name, price, stock } => Ok(vec![Event::ProductCreated {
                name: name.clone(),
                price: *price,
                stock: *stock,
            }]),
            _ if !self.exists => Err(Refused::NotFound),
            Command::Restock { quantity } => Ok(vec![Event::Restocked {
                quantity: *quantity,
            }]),
            Command::Reserve { key, .. } if self.reserved.contains_key(key) => Ok(vec![]),
            Command::Reserve { quantity, .. } if *quantity > self.available => {
                Err(Refused::OutOfStock {
                    available: self.available,
                    wanted: *quantity,
                })
            }
            Command::Reserve { key, quantity } => Ok(vec![Event::StockReserved {
                key: key.clone(),
                quantity: *quantity,
            }]),
            Command::Release { key } => Ok(self
                .reserved
                .get(key)
                .map(|quantity| Event::StockReleased {
                    key: key.clone(),
                    quantity: *quantity,
                })
                .into_iter()
                .collect()),
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::ProductCreated { name, price, stock } => {
                self.exists = true;
                self.name = name.clone();
                self.price = *price;
                self.available = *stock;
            }
            Event::Restocked { quantity } => self.available += quantity,
            Event::StockReserved { key, quantity } => {
                self.available = self.available.saturating_sub(*quantity);
                self.reserved.insert(key.clone(), *quantity);
            }
            Event::StockReleased { key, quantity } => {
                self.available += quantity;
                self.reserved.remove(key);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use flotilla::eventsourcing::aggregate::testing::given;

    use super::*;

    fn listed(stock: u64) -> Event {
        Event::ProductCreated {
            name: "Mug".into(),
            price: 1200,
            stock,
        }
    }

    fn reserve(key: &str, quantity: u64) -> Command {
        Command::Reserve {
            key: key.into(),
            quantity,
        }
    }

    #[test]
    fn a_repeated_reservation_key_holds_stock_once() {
        let held = Event::StockReserved {
            key: "k".into(),
            quantity: 2,
        };
        given::<Product>([listed(5), held])
            .when(reserve("k", 2))
            .then([]);
    }

    #[test]
    fn reserving_more_than_is_free_is_refused() {
        given::<Product>([listed(1)])
            .when(reserve("k", 2))
            .then_refused(|e| matches!(e, Refused::OutOfStock { available: 1, .. }));
    }

    #[test]
    fn releasing_an_unknown_key_records_nothing() {
        let release = Command::Release { key: "k".into() };
        given::<Product>([listed(1)]).when(release).then([]);
    }
}
