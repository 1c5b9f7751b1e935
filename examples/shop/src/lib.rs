//! The example shop: four services on the public Flotilla SDK, each its own process and
//! [`Microservice`](flotilla::Microservice), connected to a running control plane
//! (`flotilla up`) by one setting, `FLOTILLA_PLATFORM__URL`.
//!
//! - [`users`]: accounts kept as one event stream per user; publishes `user.created` and
//!   `user.updated`.
//! - [`inventory`]: products with stock; reservations keyed by `Idempotency-Key`; cacheable
//!   product reads.
//! - [`payments`]: charges and refunds keyed by `Idempotency-Key`, with a configurable failure
//!   rate and latency; publishes `payment.processed` and `payment.failed`.
//! - [`orders`]: the event-sourced `Order` aggregate, a hosted projection listing orders, and
//!   the `place-order` saga (reserve stock, charge, confirm; release and refund on the way
//!   back) run by an in-process orchestrator on the platform's event store.
//!
//! Every piece of state lives in the platform's event store, so a service restarts with its
//! data. The guide is docs/shop.md.

// Handlers and their helpers fail with `Problem`, which *is* the response: built once per
// failed request, never passed through hot loops, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod config;
mod http;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod users;

pub use config::ShopConfig;

/// One of the shop's services, as named on the command line and in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `users`
    Users,
    /// `orders`
    Orders,
    /// `inventory`
    Inventory,
    /// `payments`
    Payments,
}

impl Service {
    /// Every service, in the order they are best started.
    pub const ALL: [Service; 4] = [
        Service::Users,
        Service::Inventory,
        Service::Payments,
        Service::Orders,
    ];

    /// The name it registers under.
    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders => "orders",
            Service::Inventory => "inventory",
            Service::Payments => "payments",
        }
    }

    /// The port it listens on unless `FLOTILLA_SERVICE__LISTEN` says otherwise, so the four
    /// can run side by side (and beside the gateway's 8080) with no setting.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Users => 8101,
            Service::Orders => 8102,
            Service::Inventory => 8103,
            Service::Payments => 8104,
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Connects to the platform and runs `service` until SIGTERM or SIGINT.
pub async fn run(service: Service, file: Option<&std::path::Path>) -> Result<(), flotilla::Error> {
    let platform = flotilla::platform::Platform::load(file).await?;
    let shop = ShopConfig::load(file)?;
    let config = http::service_config(service, file)?;
    flotilla::telemetry::init(config.log_format, &config.log_level);
    let builder = flotilla::Microservice::builder(service.name())?
        .version(env!("CARGO_PKG_VERSION"))
        .config(config)
        .platform(&platform);
    let builder = match service {
        Service::Users => users::service(builder, &platform),
        Service::Inventory => inventory::service(builder, &platform, &shop),
        Service::Payments => payments::service(builder, &platform, &shop),
        Service::Orders => orders::service(builder, &platform).await?,
    };
    builder.build()?.run().await
}
