//! The event store's Prometheus metrics: appends (by outcome), appended events, conflicts,
//! append latency, and subscription lag. [`Instrumented`] wraps any store so every caller
//! (HTTP, sagas, the SDK) is measured in one place.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, Error, EventStore, ExpectedVersion, NewEvent, Position, ReadAll, ReadStream,
    RecordedEvent, Snapshot, StreamInfo, Version,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// The outcome label of an append.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok`, `conflict` (version or idempotency) or `error`.
    pub result: &'static str,
}

/// The subscriber label of the lag gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Subscriber {
    /// The persistent subscriber's name.
    pub subscriber: String,
}

/// The metric handles; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    appends: Family<Outcome, Counter>,
    events: Counter,
    latency: Histogram,
    lag: Family<Subscriber, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them under `flotilla_eventstore_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            appends: Family::default(),
            events: Counter::default(),
            // 50 µs .. ~3.3 s
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            lag: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("flotilla_eventstore");
        r.register("appends", "Append calls by outcome", m.appends.clone());
        r.register(
            "appended_events",
            "Events in successful appends (idempotent retries included)",
            m.events.clone(),
        );
        r.register(
            "append_duration_seconds",
            "Time from append call to durable answer",
            m.latency.clone(),
        );
        r.register(
            "subscription_lag_events",
            "Positions between the store head and a subscriber's checkpoint",
            m.lag.clone(),
        );
        m
    }

    /// Records a persistent subscriber's lag (head minus its checkpoint).
    pub fn set_lag(&self, subscriber: &str, head: Position, checkpoint: Position) {
        let lag = i64::try_from(head.saturating_sub(checkpoint)).unwrap_or(i64::MAX);
        let label = Subscriber {
            subscriber: subscriber.to_owned(),
        };
        self.lag.get_or_create(&label).set(lag);
    }
}

/// A store that records [`Metrics`] around another store.
#[derive(Debug, Clone)]
pub struct Instrumented {
    inner: Arc<dyn EventStore>,
    metrics: Metrics,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventStore>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl EventStore for Instrumented {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, Error> {
        let start = Instant::now();
        let n = events.len() as u64;
        let result = self.inner.append(stream, expected, events).await;
        self.metrics.latency.observe(start.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::WrongExpectedVersion { .. } | Error::IdempotencyViolation { .. }) => {
                "conflict"
            }
            Err(_) => "error",
        };
        self.metrics
            .appends
            .get_or_create(&Outcome { result: outcome })
            .inc();
        if let Ok(r) = &result
            && r.last_version - r.first_version + 1 == n
        {
            self.metrics.events.inc_by(n);
        }
        result
    }

    async fn read_stream(&self, s: &StreamId, r: ReadStream) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_stream(s, r).await
    }

    async fn stream_version(&self, s: &StreamId) -> Result<Option<Version>, Error> {
        self.inner.stream_version(s).await
    }

    async fn read_all(&self, r: ReadAll) -> Result<Vec<RecordedEvent>, Error> {
        self.inner.read_all(r).await
    }

    async fn delete_stream(&self, s: &StreamId, e: ExpectedVersion) -> Result<(), Error> {
        self.inner.delete_stream(s, e).await
    }

    async fn truncate_stream(&self, s: &StreamId, before: Version) -> Result<u64, Error> {
        self.inner.truncate_stream(s, before).await
    }

    async fn save_snapshot(&self, s: Snapshot) -> Result<(), Error> {
        self.inner.save_snapshot(s).await
    }

    async fn load_snapshot(&self, s: &StreamId) -> Result<Option<Snapshot>, Error> {
        self.inner.load_snapshot(s).await
    }

    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, Error> {
        self.inner.list_streams(after, limit).await
    }

    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>, Error> {
        self.inner.list_checkpoints().await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, Error> {
        self.inner.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), Error> {
        self.inner.save_checkpoint(name, position).await?;
        self.metrics
            .set_lag(name, *self.inner.head().borrow(), position);
        Ok(())
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.inner.head()
    }
}
