//! Event handlers on the [`MicroserviceBuilder`]: subscriptions to the event bus that start
//! before the service reports ready and stop cleanly on shutdown.
//!
//! On shutdown, subscriptions stop taking events as soon as readiness flips; handlers already
//! running get the shutdown deadline to finish and are settled (acked, retried or
//! dead-lettered) exactly once. A handler still running at the deadline is dropped unsettled:
//! its event is not acked, and the group gets it again when its lease ends (at-least-once).
//!
//! A bus that is unreachable at start (`Unavailable`: a control plane or broker still coming
//! up) does not stop the service from starting: the subscription keeps trying in the
//! background with backoff, and the `events` readiness check stays critical until every
//! subscription runs, so no traffic is sent to a service that cannot yet see its events.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_bus::{Bus, HandlerError, Subscription, SubscriptionBuilder, Typed};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::health::{CheckResult, HealthCheck};
use crate::parts::{BoxFuture, Finish, Parts};
use crate::service::MicroserviceBuilder;

/// Starts one subscription; called again after a start that found the bus unreachable.
type Subscribe = Arc<
    dyn Fn(Bus, CancellationToken) -> BoxFuture<Result<Subscription, flotilla_bus::Error>>
        + Send
        + Sync,
>;

/// First and longest wait between attempts to reach an unreachable bus.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The bus and the subscriptions a builder was given.
#[derive(Default)]
pub(crate) struct EventHandlers {
    bus: Option<Bus>,
    pending: Vec<(String, Subscribe)>,
}

impl EventHandlers {
    /// Turns the subscriptions into managed parts; they need a bus. Answers the readiness
    /// check that stays critical while a subscription waits for an unreachable bus.
    pub(crate) fn into_parts(self, parts: &mut Parts) -> Result<Option<HealthCheck>, Error> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let Some(bus) = self.bus else {
            return Err(Error::Setup(
                "event handlers need a bus: call `.events(bus)` on the builder".into(),
            ));
        };
        let waiting = Arc::new(AtomicUsize::new(0));
        for (name, subscribe) in self.pending {
            let (bus, waiting) = (bus.clone(), Arc::clone(&waiting));
            parts.add(Box::new(move |stop| {
                Box::pin(start(name, subscribe, bus, stop, waiting))
            }));
        }
        Ok(Some(readiness(waiting)))
    }
}

fn readiness(waiting: Arc<AtomicUsize>) -> HealthCheck {
    HealthCheck::new("events", move || {
        let waiting = waiting.load(Ordering::Relaxed);
        async move {
            match waiting {
                0 => CheckResult::passing(),
                n => CheckResult::critical(serde_json::json!({
                    "error": format!("{n} event subscription(s) waiting for the bus to answer")
                })),
            }
        }
    })
}

async fn start(
    name: String,
    subscribe: Subscribe,
    bus: Bus,
    stop: CancellationToken,
    waiting: Arc<AtomicUsize>,
) -> Result<Finish, Error> {
    let running = match subscribe(bus.clone(), stop.clone()).await {
        Ok(subscription) => {
            tracing::debug!(subscription = %name, "event subscription started");
            tokio::spawn(async move { Some(subscription) })
        }
        Err(flotilla_bus::Error::Unavailable(reason)) => {
            tracing::warn!(
                subscription = %name, %reason,
                "the event bus is unreachable; the subscription starts when it answers (not ready until then)"
            );
            waiting.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(retry(name.clone(), subscribe, bus, stop, waiting))
        }
        Err(e) => {
            return Err(Error::Subscription {
                subscription: name,
                message: e.to_string(),
            });
        }
    };
    Ok(finish(name, running))
}

/// Tries to start the subscription until it starts, fails for good, or the service stops.
async fn retry(
    name: String,
    subscribe: Subscribe,
    bus: Bus,
    stop: CancellationToken,
    waiting: Arc<AtomicUsize>,
) -> Option<Subscription> {
    let mut delay = RETRY_FIRST;
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        match subscribe(bus.clone(), stop.clone()).await {
            Ok(subscription) => {
                waiting.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(subscription = %name, "event subscription started");
                return Some(subscription);
            }
            Err(flotilla_bus::Error::Unavailable(_)) => delay = (delay * 2).min(RETRY_MAX),
            Err(e) => {
                // Stays counted as waiting: the service must not report ready without it.
                tracing::error!(subscription = %name, error = %e, "event subscription cannot start");
                return None;
            }
        }
    }
}

fn finish(name: String, running: JoinHandle<Option<Subscription>>) -> Finish {
    Box::new(move |deadline: Duration| {
        Box::pin(async move {
            let Ok(Some(subscription)) = running.await else {
                return;
            };
            if !subscription.join_within(deadline).await {
                tracing::warn!(
                    subscription = %name, ?deadline,
                    "event handlers outlived the shutdown deadline; their events are not acked and come back"
                );
            }
        })
    })
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
        D: Fn(&Bus) -> SubscriptionBuilder + Send + Sync + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let name = format!("#{}", self.events.pending.len() + 1);
        self.add_subscription(name, describe, handler)
    }

    fn add_subscription<T, D, F, Fut>(mut self, name: String, describe: D, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        D: Fn(&Bus) -> SubscriptionBuilder + Send + Sync + 'static,
        F: Fn(Typed<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let (describe, handler) = (Arc::new(describe), Arc::new(handler));
        let subscribe: Subscribe = Arc::new(move |bus, stop| {
            let (describe, handler) = (Arc::clone(&describe), Arc::clone(&handler));
            Box::pin(async move {
                describe(&bus)
                    .shutdown_on(&stop)
                    .typed_handler(move |event| handler(event))
                    .await
            })
        });
        self.events.pending.push((name, subscribe));
        self
    }
}
