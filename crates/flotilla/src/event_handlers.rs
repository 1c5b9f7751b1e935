//! Event handlers on the [`MicroserviceBuilder`]: subscriptions to the event bus that start
//! before the service reports ready and stop cleanly on shutdown.
//!
//! On shutdown, subscriptions stop taking events as soon as readiness flips; handlers already
//! running get the shutdown deadline to finish and are settled (acked, retried or
//! dead-lettered) exactly once. A handler still running at the deadline is dropped unsettled:
//! its event is not acked, and the group gets it again when its lease ends (at-least-once).

use std::future::Future;
use std::time::Duration;

use flotilla_bus::{Bus, HandlerError, Subscription, SubscriptionBuilder, Typed};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::parts::{BoxFuture, Finish, Parts};
use crate::service::MicroserviceBuilder;

type Subscribe = Box<
    dyn FnOnce(Bus, CancellationToken) -> BoxFuture<Result<Subscription, flotilla_bus::Error>>
        + Send,
>;

/// The bus and the subscriptions a builder was given.
#[derive(Default)]
pub(crate) struct EventHandlers {
    bus: Option<Bus>,
    pending: Vec<(String, Subscribe)>,
}

impl EventHandlers {
    /// Turns the subscriptions into managed parts; they need a bus.
    pub(crate) fn into_parts(self, parts: &mut Parts) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(bus) = self.bus else {
            return Err(Error::Setup(
                "event handlers need a bus: call `.events(bus)` on the builder".into(),
            ));
        };
        for (name, subscribe) in self.pending {
            let bus = bus.clone();
            parts.add(Box::new(move |stop| {
                Box::pin(start(name, subscribe, bus, stop))
            }));
        }
        Ok(())
    }
}

async fn start(
    name: String,
    subscribe: Subscribe,
    bus: Bus,
    stop: CancellationToken,
) -> Result<Finish, Error> {
    let subscription = subscribe(bus, stop)
        .await
        .map_err(|e| Error::Subscription {
            subscription: name.clone(),
            message: e.to_string(),
        })?;
    tracing::debug!(subscription = %name, "event subscription started");
    Ok(Box::new(move |deadline: Duration| {
        Box::pin(async move {
            if !subscription.join_within(deadline).await {
                tracing::warn!(
                    subscription = %name, ?deadline,
                    "event handlers outlived the shutdown deadline; their events are not acked and come back"
                );
            }
        })
    }))
}

impl MicroserviceBuilder {
    /// The event bus the service's event handlers subscribe to. Unless the bus already records
    /// metrics, its handler metrics (`flotilla_bus_delivered`, `_acked`, `_nacked`,
    /// `_dead_lettered`, `_handler_seconds`) are recorded in the service's registry and served
    /// at `/metrics`.
    pub fn events(mut self, bus: Bus) -> Self {
        let bus = match bus.metrics() {
            Some(_) => bus,
            None => bus.with_metrics(self.metrics().bus()),
        };
        self.events.bus = Some(bus);
        self
    }

    /// Handles events of topics matching `pattern` (`orders.*`) as a member of consumer group
    /// `group`, their JSON payload decoded as `T` (a payload that does not decode is
    /// dead-lettered at once). The subscription uses the bus's defaults: one handler at a
    /// time, a 30 s handler timeout, 5 deliveries with exponential backoff; use
    /// [`subscription`](Self::subscription) to choose.
    ///
    /// ```no_run
    /// # async fn demo(bus: flotilla::events::Bus) -> Result<(), flotilla::Error> {
    /// use flotilla::Microservice;
    /// use flotilla::events::Typed;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct OrderPlaced { order: String }
    ///
    /// Microservice::builder("billing")?
    ///     .events(bus)
    ///     .on_event("orders.*", "billing", |event: Typed<OrderPlaced>| async move {
    ///         println!("bill order {}", event.data.order);
    ///         Ok(())
    ///     })
    ///     .build()?
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn on_event<T, F, Fut>(self, pattern: &str, group: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let name = format!("{pattern:?} (group {group:?})");
        let (pattern, group) = (pattern.to_owned(), group.to_owned());
        self.add_subscription(
            name,
            move |bus| bus.subscribe(&pattern).group(&group),
            handler,
        )
    }

    /// Handles events of the subscription `describe` builds (pattern, group, filter,
    /// concurrency, handler timeout, delivery policy), their JSON payload decoded as `T`.
    ///
    /// ```no_run
    /// # fn demo(builder: flotilla::MicroserviceBuilder) -> flotilla::MicroserviceBuilder {
    /// use flotilla::events::Typed;
    /// builder.subscription(
    ///     |bus| bus.subscribe("orders.>").group("billing").concurrency(4),
    ///     |event: Typed<serde_json::Value>| async move { Ok(()) },
    /// )
    /// # }
    /// ```
    pub fn subscription<T, D, F, Fut>(self, describe: D, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        D: FnOnce(&Bus) -> SubscriptionBuilder + Send + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let name = format!("#{}", self.events.pending.len() + 1);
        self.add_subscription(name, describe, handler)
    }

    fn add_subscription<T, D, F, Fut>(mut self, name: String, describe: D, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        D: FnOnce(&Bus) -> SubscriptionBuilder + Send + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let subscribe: Subscribe = Box::new(move |bus, stop| {
            Box::pin(async move {
                describe(&bus)
                    .shutdown_on(&stop)
                    .typed_handler(handler)
                    .await
            })
        });
        self.events.pending.push((name, subscribe));
        self
    }
}
