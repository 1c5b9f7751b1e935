//! Loading aggregates (snapshot + tail) and handling commands with optimistic concurrency.

use std::marker::PhantomData;
use std::sync::Arc;

use flotilla_core::StreamId;
use tracing::Instrument as _;

use crate::aggregate::{Aggregate, DomainEvent};
use crate::upcast::Upcasters;
use crate::{
    AppendResult, Error, EventStore, ExpectedVersion, Metadata, NewEvent, ReadStream, Result,
    Snapshot, Version,
};

/// Events read per page while loading.
const PAGE: usize = 1024;

/// An aggregate as loaded: its state and the version it reflects.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The stream's version (`None`: no events yet).
    pub version: Option<Version>,
}

/// What a handled command recorded.
#[derive(Debug, Clone)]
pub struct Handled<A: Aggregate> {
    /// The events recorded (empty when the command changed nothing).
    pub events: Vec<A::Event>,
    /// The state after them.
    pub state: A,
    /// Where they were written (`None` when there were no events).
    pub appended: Option<AppendResult>,
}

/// Loads and stores aggregates of type `A` in an [`EventStore`].
#[derive(Debug)]
pub struct Repository<A> {
    store: Arc<dyn EventStore>,
    snapshot_every: Option<u64>,
    retries: usize,
    upcasters: Upcasters,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshot_every: self.snapshot_every,
            retries: self.retries,
            upcasters: self.upcasters.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository with no snapshots, 3 retries on conflict and no upcasters.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            snapshot_every: None,
            retries: 3,
            upcasters: Upcasters::new(),
            _aggregate: PhantomData,
        }
    }

    /// Saves a snapshot whenever the stream's version crosses a multiple of `n` (0: never).
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = (n > 0).then_some(n);
        self
    }

    /// How often a command is decided again after losing a version race.
    pub fn retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// Upgrades old events as they are loaded.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The stream of the aggregate with `id`.
    pub fn stream(&self, id: &str) -> Result<StreamId> {
        StreamId::new(format!("{}-{id}", A::CATEGORY))
            .map_err(|e| Error::InvalidInput(format!("aggregate id {id:?}: {e}")))
    }

    /// Loads the aggregate: its latest snapshot (if it still decodes) plus the events after it.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let stream = self.stream(id)?;
        let (mut state, mut version) = self.start_from_snapshot(&stream).await?;
        loop {
            let from = version.map_or(1, |v| v + 1);
            let page = self
                .store
                .read_stream(&stream, ReadStream::forward(from, PAGE))
                .await?;
            let full = page.len() == PAGE;
            for recorded in page {
                let recorded = self.upcasters.apply(recorded);
                let event: A::Event =
                    serde_json::from_value(recorded.data).map_err(|e| Error::Storage {
                        message: format!("{stream} v{}: cannot decode: {e}", recorded.version),
                        retryable: false,
                    })?;
                state = state.evolve(&event);
                version = Some(recorded.version);
            }
            if !full {
                return Ok(Loaded { state, version });
            }
        }
    }

    async fn start_from_snapshot(&self, stream: &StreamId) -> Result<(A, Option<Version>)> {
        let Some(snapshot) = self.store.load_snapshot(stream).await? else {
            return Ok((A::default(), None));
        };
        match serde_json::from_value(snapshot.state) {
            Ok(state) => Ok((state, Some(snapshot.version))),
            Err(e) => {
                // A snapshot from an older state shape: replay instead of failing.
                tracing::warn!(%stream, error = %e, "snapshot does not decode, replaying");
                Ok((A::default(), None))
            }
        }
    }

    /// Handles `command`: loads, decides, appends expecting the loaded version. When another
    /// writer got there first it reloads and decides again, up to the retry limit. The outer
    /// error is the store's; the inner one is the aggregate's refusal.
    pub async fn handle(
        &self,
        id: &str,
        command: &A::Command,
        metadata: Metadata,
    ) -> Result<std::result::Result<Handled<A>, A::Error>> {
        let mut attempt = 0;
        loop {
            let loaded = self.load(id).await?;
            let events = match loaded.state.decide(command) {
                Ok(events) => events,
                Err(refused) => return Ok(Err(refused)),
            };
            match self.save(id, loaded, events, &metadata).await {
                Err(Error::WrongExpectedVersion { .. }) if attempt < self.retries => attempt += 1,
                other => return other.map(Ok),
            }
        }
    }

    async fn save(
        &self,
        id: &str,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        metadata: &Metadata,
    ) -> Result<Handled<A>> {
        if events.is_empty() {
            let state = loaded.state;
            return Ok(Handled {
                events,
                state,
                appended: None,
            });
        }
        let stream = self.stream(id)?;
        let new = events
            .iter()
            .map(|e| {
                let data =
                    serde_json::to_value(e).map_err(|e| Error::InvalidInput(e.to_string()))?;
                Ok(NewEvent::new(e.event_type(), data).with_metadata(metadata.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        let expected = ExpectedVersion::Exact(loaded.version.unwrap_or(0));
        let span = append_span(A::CATEGORY, &stream, new.len());
        let appended = self
            .store
            .append(&stream, expected, new)
            .instrument(span.clone())
            .await
            .inspect_err(|e| {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", tracing::field::debug(e.kind()));
            })?;
        let state = events.iter().fold(loaded.state, |s, e| s.evolve(e));
        self.maybe_snapshot(&stream, &state, loaded.version, appended.last_version)
            .await;
        Ok(Handled {
            events,
            state,
            appended: Some(appended),
        })
    }

    async fn maybe_snapshot(&self, stream: &StreamId, state: &A, before: Option<u64>, now: u64) {
        let Some(n) = self.snapshot_every else { return };
        if before.unwrap_or(0) / n == now / n {
            return;
        }
        let snapshot = serde_json::to_value(state).map(|state| Snapshot {
            stream: stream.clone(),
            version: now,
            state,
        });
        // The command is already durable; a missing snapshot only costs a longer replay.
        let saved = match snapshot {
            Ok(s) => self.store.save_snapshot(s).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = saved {
            tracing::warn!(%stream, %error, "snapshot not saved");
        }
    }
}

/// The exported span of an append (OpenTelemetry database conventions): a child of the
/// exported span it runs in when that one is sampled; none when it is not, or when spans are
/// not exported. Outside any exported span the append starts a trace, sampled before the span
/// is built ([`flotilla_telemetry::Hop`]), so an unsampled append formats nothing.
fn append_span(category: &str, stream: &StreamId, events: usize) -> tracing::Span {
    if !flotilla_telemetry::enabled() {
        return tracing::Span::none();
    }
    let hop = flotilla_telemetry::Hop::begin_within(None);
    if !hop.records() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: flotilla_telemetry::TARGET,
        "append",
        otel.kind = "client",
        otel.name = format!("append {category}"),
        otel.status_code = tracing::field::Empty,
        db.system.name = "flotilla.eventstore",
        db.operation.name = "append",
        db.collection.name = category,
        db.operation.batch.size = events,
        flotilla.stream = stream.as_str(),
        error.type = tracing::field::Empty,
    );
    // A trace this append starts takes the trace id its sampling was decided on.
    hop.continue_trace(&span);
    span
}
