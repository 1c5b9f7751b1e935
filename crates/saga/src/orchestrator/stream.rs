//! Reading and writing an instance's stream. Every append carries the expected version the
//! state was folded to: the fencing token that lets exactly one replica record a transition.

use std::time::Duration;

use flotilla_core::StreamId;
use flotilla_eventstore::{
    AppendResult, EventStore, ExpectedVersion, NewEvent, ReadStream, RecordedEvent,
};
use flotilla_resilience::backoff::Backoff;

use crate::event::SagaEvent;
use crate::state::SagaState;
use crate::{Error, Result};

/// Every saga stream is in this category (`saga-<name>-<uuid>`).
pub(crate) const CATEGORY: &str = "saga";

/// The stream of instance `id` (`<name>-<uuid>`).
pub(crate) fn stream_of(id: &str) -> Result<StreamId> {
    StreamId::new(format!("{CATEGORY}-{id}")).map_err(|_| Error::NotFound(id.to_owned()))
}

/// The instance id of a saga stream.
pub(crate) fn id_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix("saga-")
}

const STORE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(50),
    cap: Duration::from_secs(5),
};

/// What an append came to.
#[derive(Debug)]
pub(crate) enum Appended {
    /// Written; the state now includes it.
    Yes,
    /// Another writer got there first; the state was brought up to date instead.
    Lost,
}

fn corrupt(e: &RecordedEvent, reason: String) -> Error {
    Error::Corrupt {
        stream: e.stream.to_string(),
        version: e.version,
        reason,
    }
}

/// The instance as its stream says now.
pub(crate) async fn load(store: &dyn EventStore, id: &str) -> Result<SagaState> {
    let stream = stream_of(id)?;
    let events = store
        .read_stream(&stream, ReadStream::forward(1, 1))
        .await?;
    let first = events
        .first()
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    let mut state =
        SagaState::start(id, &SagaEvent::from_recorded(first)?).map_err(|r| corrupt(first, r))?;
    state.trace = crate::spans::from_metadata(&first.metadata);
    catch_up(store, state).await
}

/// [`load`], retrying retryable storage errors: an instance being resumed must not be left
/// without a driver because the store missed one read (it would stay unfinished until the
/// next `recover()`, which a single orchestrator runs only at start).
pub(crate) async fn load_durably(store: &dyn EventStore, id: &str) -> Result<SagaState> {
    until_stored(&id, saga_retryable, || load(store, id)).await
}

/// [`catch_up`], retrying retryable storage errors: a driver that gave up on one missed read
/// would leave its instance unfinished until the next `recover()`.
pub(crate) async fn catch_up_durably(
    store: &dyn EventStore,
    state: SagaState,
) -> Result<SagaState> {
    let id = state.id.clone();
    until_stored(&id, saga_retryable, || catch_up(store, state.clone())).await
}

/// Runs `op` again, with backoff, for as long as it fails with an error `retryable` accepts
/// (the store could not be reached, or did not answer): the outcome of such a failure is
/// unknown, every read and idempotent append may be repeated, and a driver that gave up
/// would stall its instance.
async fn until_stored<T, E, F, Fut>(
    what: &(dyn std::fmt::Display + Sync),
    retryable: fn(&E) -> bool,
    mut op: F,
) -> std::result::Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut retry = 0u32;
    loop {
        match op().await {
            Err(e) if retryable(&e) => {
                retry = retry.saturating_add(1);
                tracing::warn!(%what, error = %e, retry, "saga storage failed; retrying");
                tokio::time::sleep(STORE_BACKOFF.delay(retry)).await;
            }
            other => return other,
        }
    }
}

fn store_retryable(e: &flotilla_eventstore::Error) -> bool {
    matches!(
        e,
        flotilla_eventstore::Error::Storage {
            retryable: true,
            ..
        }
    )
}

fn saga_retryable(e: &Error) -> bool {
    matches!(e, Error::Store(inner) if store_retryable(inner))
}

/// `state` with every event appended after it.
pub(crate) async fn catch_up(store: &dyn EventStore, mut state: SagaState) -> Result<SagaState> {
    let stream = stream_of(&state.id)?;
    let read = ReadStream::forward(state.stream_version + 1, usize::MAX);
    for e in store.read_stream(&stream, read).await? {
        let event = SagaEvent::from_recorded(&e)?;
        state = state.apply(&event).map_err(|r| corrupt(&e, r))?;
        state.stream_version = e.version;
    }
    Ok(state)
}

/// Appends `event` if nothing else was appended since `state`; either way `state` ends up
/// current.
pub(crate) async fn append(
    store: &dyn EventStore,
    state: &mut SagaState,
    event: SagaEvent,
) -> Result<Appended> {
    append_all(store, state, vec![event]).await
}

/// Appends `events` in one write if nothing else was appended since `state`; either way
/// `state` ends up current.
pub(crate) async fn append_all(
    store: &dyn EventStore,
    state: &mut SagaState,
    events: Vec<SagaEvent>,
) -> Result<Appended> {
    let stream = stream_of(&state.id)?;
    let new = events.iter().map(|e| e.to_new_event(&state.id)).collect();
    let expected = ExpectedVersion::Exact(state.stream_version);
    match append_durably(store, &stream, expected, new).await {
        Ok(r) => {
            let mut next = state.clone();
            for event in &events {
                next = next.apply(event).map_err(|reason| Error::Corrupt {
                    stream: stream.to_string(),
                    version: r.last_version,
                    reason,
                })?;
            }
            *state = next;
            state.stream_version = r.last_version;
            Ok(Appended::Yes)
        }
        Err(flotilla_eventstore::Error::WrongExpectedVersion { .. }) => {
            *state = catch_up_durably(store, state.clone()).await?;
            Ok(Appended::Lost)
        }
        Err(e) => Err(e.into()),
    }
}

/// Appends `new` in one write, retrying retryable storage errors with the same event ids: the
/// outcome of such an error is unknown, appends are idempotent by id, and giving up would
/// stall the instance until the next `recover()`.
pub(crate) async fn append_durably(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    new: Vec<NewEvent>,
) -> Result<AppendResult, flotilla_eventstore::Error> {
    until_stored(stream, store_retryable, || {
        store.append(stream, expected, new.clone())
    })
    .await
}
