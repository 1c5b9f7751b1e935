//! The example Order aggregate (items added, confirmed, cancelled), event-sourced with the
//! toolkit: given-events / when-command / then-events tests of its rules, then the repository
//! (snapshots, conflict retries, upcasting) and a projection with rebuild on the memory store.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_eventstore::aggregate::testing::given;
use flotilla_eventstore::projection::{self, BoxError, Projection};
use flotilla_eventstore::upcast::Upcasters;
use flotilla_eventstore::{
    Aggregate, DomainEvent, EventStore, ExpectedVersion, Filter, MemoryEventStore, Metadata,
    NewEvent, RecordedEvent, Repository,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    #[default]
    New,
    Open,
    Confirmed,
    Cancelled,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    status: Status,
    lines: BTreeMap<String, (u32, u64)>,
}

#[derive(Debug)]
enum Command {
    Place {
        customer: String,
    },
    AddItem {
        sku: String,
        quantity: u32,
        price_cents: u64,
    },
    Confirm,
    Cancel {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Event {
    Placed {
        customer: String,
    },
    ItemAdded {
        sku: String,
        quantity: u32,
        price_cents: u64,
    },
    Confirmed {
        total_cents: u64,
    },
    Cancelled {
        reason: String,
    },
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "OrderPlaced",
            Self::ItemAdded { .. } => "ItemAdded",
            Self::Confirmed { .. } => "OrderConfirmed",
            Self::Cancelled { .. } => "OrderCancelled",
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum Refused {
    #[error("the order is {0:?}")]
    WrongStatus(Status),
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("an order needs at least one item to be confirmed")]
    Empty,
}

impl Order {
    fn total(&self) -> u64 {
        self.lines.values().map(|(q, p)| u64::from(*q) * p).sum()
    }
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = Command;
    type Event = Event;
    type Error = Refused;

    fn decide(&self, command: &Command) -> Result<Vec<Event>, Refused> {
        use Status::*;
        match (command, self.status) {
            (Command::Place { customer }, New) => Ok(vec![Event::Placed {
                customer: customer.clone(),
            }]),
            (Command::AddItem { quantity: 0, .. }, Open) => Err(Refused::ZeroQuantity),
            (
                Command::AddItem {
                    sku,
                    quantity,
                    price_cents,
                },
                Open,
            ) => Ok(vec![Event::ItemAdded {
                sku: sku.clone(),
                quantity: *quantity,
                price_cents: *price_cents,
            }]),
            (Command::Confirm, Open) if self.lines.is_empty() => Err(Refused::Empty),
            (Command::Confirm, Open) => Ok(vec![Event::Confirmed {
                total_cents: self.total(),
            }]),
            (Command::Confirm, Confirmed) | (Command::Cancel { .. }, Cancelled) => Ok(vec![]),
            (Command::Cancel { reason }, Open | Confirmed) => Ok(vec![Event::Cancelled {
                reason: reason.clone(),
            }]),
            (_, status) => Err(Refused::WrongStatus(status)),
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Placed { .. } => self.status = Status::Open,
            Event::ItemAdded {
                sku,
                quantity,
                price_cents,
            } => {
                let line = self.lines.entry(sku.clone()).or_insert((0, *price_cents));
                line.0 += quantity;
                line.1 = *price_cents;
            }
            Event::Confirmed { .. } => self.status = Status::Confirmed,
            Event::Cancelled { .. } => self.status = Status::Cancelled,
        }
        self
    }
}

fn placed() -> Event {
    Event::Placed {
        customer: "ann".into(),
    }
}

fn item(sku: &str, quantity: u32, price_cents: u64) -> Event {
    Event::ItemAdded {
        sku: sku.into(),
        quantity,
        price_cents,
    }
}

fn add(sku: &str, quantity: u32, price_cents: u64) -> Command {
    Command::AddItem {
        sku: sku.into(),
        quantity,
        price_cents,
    }
}

#[test]
fn placing_a_new_order_records_placed() {
    given::<Order>([])
        .when(Command::Place {
            customer: "ann".into(),
        })
        .then([placed()]);
}

#[test]
fn items_are_added_to_an_open_order() {
    given::<Order>([placed()])
        .when(add("tea", 2, 350))
        .then([item("tea", 2, 350)]);
}

#[test]
fn items_cannot_be_added_before_the_order_is_placed() {
    given::<Order>([])
        .when(add("tea", 1, 350))
        .then_refused(|e| *e == Refused::WrongStatus(Status::New));
}

#[test]
fn a_zero_quantity_is_refused() {
    given::<Order>([placed()])
        .when(add("tea", 0, 350))
        .then_refused(|e| *e == Refused::ZeroQuantity);
}

#[test]
fn confirming_records_the_total_of_all_lines() {
    given::<Order>([
        placed(),
        item("tea", 2, 350),
        item("cup", 1, 900),
        item("tea", 1, 350),
    ])
    .when(Command::Confirm)
    .then([Event::Confirmed {
        total_cents: 3 * 350 + 900,
    }]);
}

#[test]
fn an_empty_order_cannot_be_confirmed() {
    given::<Order>([placed()])
        .when(Command::Confirm)
        .then_refused(|e| *e == Refused::Empty);
}

#[test]
fn confirming_twice_records_nothing_more() {
    given::<Order>([
        placed(),
        item("tea", 1, 350),
        Event::Confirmed { total_cents: 350 },
    ])
    .when(Command::Confirm)
    .then([]);
}

#[test]
fn a_confirmed_order_can_be_cancelled_but_not_changed() {
    let history = || {
        [
            placed(),
            item("tea", 1, 350),
            Event::Confirmed { total_cents: 350 },
        ]
    };
    given::<Order>(history())
        .when(Command::Cancel {
            reason: "changed mind".into(),
        })
        .then([Event::Cancelled {
            reason: "changed mind".into(),
        }]);
    given::<Order>(history())
        .when(add("cup", 1, 900))
        .then_refused(|e| *e == Refused::WrongStatus(Status::Confirmed));
}

#[test]
fn a_cancelled_order_refuses_confirmation() {
    given::<Order>([
        placed(),
        item("tea", 1, 350),
        Event::Cancelled { reason: "x".into() },
    ])
    .when(Command::Confirm)
    .then_refused(|e| *e == Refused::WrongStatus(Status::Cancelled));
}

fn repo(store: &Arc<MemoryEventStore>) -> Repository<Order> {
    let store: Arc<dyn EventStore> = store.clone();
    Repository::new(store)
}

async fn handle(repo: &Repository<Order>, id: &str, c: Command) -> Vec<Event> {
    repo.handle(id, &c, Metadata::default())
        .await
        .unwrap()
        .unwrap()
        .events
}

#[tokio::test]
async fn the_repository_stores_decisions_and_snapshot_plus_tail_equals_replay() {
    let store = Arc::new(MemoryEventStore::new());
    let with_snapshots = repo(&store).snapshot_every(2);
    handle(
        &with_snapshots,
        "1",
        Command::Place {
            customer: "ann".into(),
        },
    )
    .await;
    for i in 0..4 {
        handle(&with_snapshots, "1", add(&format!("sku{i}"), 1, 100)).await;
    }
    let snap = store
        .load_snapshot(&with_snapshots.stream("1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        snap.map(|s| s.version),
        Some(4),
        "a snapshot at each multiple of 2"
    );
    let from_snapshot = with_snapshots.load("1").await.unwrap();
    let replayed = repo(&store).load("1").await.unwrap();
    assert_eq!(from_snapshot.version, Some(5));
    assert_eq!(from_snapshot.state.lines, replayed.state.lines);
    assert_eq!(from_snapshot.state.total(), 400);
    let refused = with_snapshots
        .handle("1", &add("x", 0, 1), Metadata::default())
        .await;
    assert_eq!(refused.unwrap().unwrap_err(), Refused::ZeroQuantity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_retry_on_conflict_and_all_land() {
    let store = Arc::new(MemoryEventStore::new());
    let r = repo(&store).retries(50);
    handle(
        &r,
        "7",
        Command::Place {
            customer: "bob".into(),
        },
    )
    .await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { handle(&r, "7", add(&format!("s{i}"), 1, 10)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 1);
    }
    let loaded = r.load("7").await.unwrap();
    assert_eq!((loaded.version, loaded.state.lines.len()), (Some(9), 8));
}

#[tokio::test]
async fn upcasters_read_the_legacy_item_shape() {
    let store = Arc::new(MemoryEventStore::new());
    let r = repo(&store);
    let stream = r.stream("9").unwrap();
    let legacy = vec![
        NewEvent::new("OrderPlaced", json!({"Placed": {"customer": "cy"}})),
        // Version 1 of ItemAdded had no price and called the sku "product".
        NewEvent::new("ItemAddedV1", json!({"product": "tea", "quantity": 2})),
    ];
    store
        .append(&stream, ExpectedVersion::NoStream, legacy)
        .await
        .unwrap();
    let r = r.upcasters(Upcasters::new().step("ItemAddedV1", "ItemAdded", |d| {
        json!({"ItemAdded": {"sku": d["product"], "quantity": d["quantity"], "price_cents": 0}})
    }));
    let loaded = r.load("9").await.unwrap();
    assert_eq!(loaded.state.lines.get("tea"), Some(&(2, 0)));
}

#[derive(Debug, Default)]
struct Totals {
    confirmed: BTreeMap<String, u64>,
}

#[async_trait]
impl Projection for Totals {
    fn name(&self) -> &str {
        "order-totals"
    }

    fn filter(&self) -> Filter {
        Filter::EventType("OrderConfirmed".into())
    }

    async fn apply(&mut self, e: &RecordedEvent) -> Result<(), BoxError> {
        let event: Event = serde_json::from_value(e.data.clone())?;
        if let Event::Confirmed { total_cents } = event {
            self.confirmed.insert(e.stream.to_string(), total_cents);
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.confirmed.clear();
        Ok(())
    }
}

#[tokio::test]
async fn a_projection_rebuilds_from_scratch_and_continues_from_its_checkpoint() {
    let store = Arc::new(MemoryEventStore::new());
    let r = repo(&store);
    for id in ["a", "b", "c"] {
        handle(
            &r,
            id,
            Command::Place {
                customer: id.into(),
            },
        )
        .await;
        handle(&r, id, add("tea", 1, 100)).await;
        handle(&r, id, Command::Confirm).await;
    }
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let mut totals = Totals::default();
    totals.confirmed.insert("stale".into(), 1);
    let mut reports = Vec::new();
    let at = projection::rebuild(dyn_store.clone(), &mut totals, |done, target| {
        reports.push((done, target));
    })
    .await
    .unwrap();
    assert_eq!(
        totals.confirmed.len(),
        3,
        "rebuilt from scratch: {totals:?}"
    );
    assert_eq!(
        reports.last().copied(),
        Some((at, at)),
        "progress reaches the target"
    );
    assert_eq!(
        store.load_checkpoint("order-totals").await.unwrap(),
        Some(at)
    );
    handle(
        &r,
        "d",
        Command::Place {
            customer: "d".into(),
        },
    )
    .await;
    handle(&r, "d", add("cup", 2, 50)).await;
    handle(&r, "d", Command::Confirm).await;
    let last = *store.head().borrow();
    // Stop once the checkpoint reaches the last event: the run has handled everything.
    let caught_up = async {
        while store.load_checkpoint("order-totals").await.unwrap() != Some(last) {
            tokio::task::yield_now().await;
        }
    };
    let run = projection::run(dyn_store, &mut totals, caught_up).await;
    run.unwrap();
    assert_eq!(totals.confirmed.get("order-d"), Some(&100));
}
