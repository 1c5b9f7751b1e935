//! A complete service against a running platform (`flotilla up`), configured by one setting:
//! it registers, keeps an event-sourced `Account` aggregate in the platform's event store,
//! publishes `accounts.credited` on the platform's bus, and credits accounts when
//! `payments.received` events arrive — each payment once, however often it is delivered.
//!
//! ```sh
//! flotilla up &
//! FLOTILLA_PLATFORM__URL=http://127.0.0.1:4400 FLOTILLA_SERVICE__LISTEN=127.0.0.1:9100 \
//!     cargo run -p flotilla --example platform_service
//! curl -X POST localhost:9100/accounts/42/credits -H 'content-type: application/json' \
//!     -d '{"payment": "p-1", "amount": 5}'
//! flotilla events publish payments.received --type payments.received --data '{"account": "42", "payment": "p-2", "amount": 7}'
//! flotilla streams read account-42
//! ```

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use flotilla::events::{Bus, HandlerError, Typed};
use flotilla::eventsourcing::{Aggregate, DomainEvent, Metadata, Repository};
use flotilla::platform::Platform;
use flotilla::{Json, Microservice, Problem, ServiceConfig};
use serde::{Deserialize, Serialize};

/// A payment to credit: the payment id makes crediting idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Credit {
    account: Option<String>,
    payment: String,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum AccountEvent {
    Credited { payment: String, amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        "Credited"
    }
}

/// The account: its balance and the payments already credited.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
    payments: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("a credit must be more than 0")]
struct ZeroCredit;

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = Credit;
    type Event = AccountEvent;
    type Error = ZeroCredit;

    fn decide(&self, credit: &Credit) -> Result<Vec<AccountEvent>, ZeroCredit> {
        if credit.amount == 0 {
            return Err(ZeroCredit);
        }
        // A payment seen before records nothing: redeliveries and retries are harmless.
        if self.payments.contains(&credit.payment) {
            return Ok(Vec::new());
        }
        let (payment, amount) = (credit.payment.clone(), credit.amount);
        Ok(vec![AccountEvent::Credited { payment, amount }])
    }

    fn evolve(mut self, event: &AccountEvent) -> Self {
        let AccountEvent::Credited { payment, amount } = event;
        self.balance += amount;
        self.payments.insert(payment.clone());
        self
    }
}

#[derive(Clone)]
struct Accounts {
    repository: Repository<Account>,
    bus: Bus,
}

impl Accounts {
    /// Credits `account`; publishes `accounts.credited` when the credit was new.
    async fn credit(&self, account: &str, credit: &Credit) -> Result<u64, Problem> {
        let handled = self
            .repository
            .handle(account, credit, Metadata::default())
            .await
            .map_err(|e| Problem::from_error(&e))?
            .map_err(|refused| Problem::bad_request(refused.to_string()))?;
        if !handled.events.is_empty() {
            let credited = serde_json::json!({ "account": account, "payment": credit.payment });
            self.bus
                .publish_json("/accounts", "accounts.credited", &credited)
                .await
                .map_err(|e| Problem::from_error(&e))?;
        }
        Ok(handled.state.balance)
    }
}

async fn post_credit(
    State(accounts): State<Accounts>,
    Path(account): Path<String>,
    Json(credit): Json<Credit>,
) -> Result<Json<serde_json::Value>, Problem> {
    let balance = accounts.credit(&account, &credit).await?;
    Ok(Json(
        serde_json::json!({ "account": account, "balance": balance }),
    ))
}

#[tokio::main]
async fn main() -> Result<(), flotilla::Error> {
    let config = ServiceConfig::load(None)?;
    flotilla::telemetry::init(config.log_format, &config.log_level);
    let platform = Platform::load(None).await?; // [platform] url, or FLOTILLA_PLATFORM__URL
    let accounts = Accounts {
        repository: Repository::new(platform.event_store()),
        bus: platform.bus(),
    };
    let routes = Router::new()
        .route("/accounts/{id}/credits", post(post_credit))
        .with_state(accounts.clone());
    let on_payment = move |payment: Typed<Credit>| {
        let accounts = accounts.clone();
        async move {
            let credit = payment.data;
            let Some(account) = credit.account.clone() else {
                return Err(HandlerError::reject("a payment names its account"));
            };
            match accounts.credit(&account, &credit).await {
                Ok(_) => Ok(()),
                // A refused credit will never pass: dead-letter it. Anything else (the
                // platform restarting) is retried with backoff.
                Err(p) if p.status_code().is_client_error() => {
                    Err(HandlerError::reject(p.detail.unwrap_or(p.title)))
                }
                Err(p) => Err(HandlerError::retry(p.detail.unwrap_or(p.title))),
            }
        }
    };
    Microservice::builder("accounts")?
        .version(env!("CARGO_PKG_VERSION"))
        .config(config)
        .platform(&platform)
        .routes(routes)
        .on_event("payments.received", "accounts", on_payment)
        .build()?
        .run()
        .await
}
