//! Live streams over SSE: events of `$all` as they are appended, and the store's head.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use flotilla_eventstore::{RecordedEvent, subscribe_all};
use futures_util::{Stream, StreamExt as _};
use tokio_stream::wrappers::WatchStream;

use super::Q;
use super::read::{AllQuery, filter_of};
use crate::StoreApi;
use crate::problem::Problem;

/// How often an idle `$head` stream sends a comment, so a client can tell a quiet store from a
/// dead connection (it reconnects after a few missed beats).
const HEAD_KEEP_ALIVE: Duration = Duration::from_secs(5);

pub(super) async fn subscribe(
    State(api): State<StoreApi>,
    Q(q): Q<AllQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let filter = filter_of(&q)?;
    // A reconnecting EventSource resumes after the last id it saw.
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match last_id {
        Some(id) => id
            .parse()
            .map_err(|_| Problem::bad_request(format!("Last-Event-ID {id:?} is not a position")))?,
        None => q.after.unwrap_or(0),
    };
    // The permit lives as long as the stream, so a closed connection frees its slot.
    let permit = api
        .subscribers
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::too_many_subscribers())?;
    let sub = subscribe_all(api.store.clone(), after, filter);
    let end = api.streams_end.clone().cancelled_owned();
    let stream = futures_util::stream::unfold(Some((sub, permit)), |state| async move {
        let (mut sub, permit) = state?;
        match sub.next().await? {
            Ok(e) => Some((Ok(sse_event(&e)), Some((sub, permit)))),
            Err(e) => {
                // Storage details stay in the log; the client resumes from its last id.
                tracing::error!(error = %e, "subscription failed");
                let ev = SseEvent::default()
                    .event("error")
                    .data("the subscription failed; reconnect with Last-Event-ID to resume");
                Some((Ok(ev), None))
            }
        }
    })
    .take_until(end);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse_event(e: &RecordedEvent) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "null".into());
    let event = SseEvent::default().id(e.position.to_string()).data(data);
    // The SSE `event:` line cannot carry line breaks; the type is in the data regardless.
    if e.event_type.chars().any(char::is_control) {
        event
    } else {
        event.event(e.event_type.as_str())
    }
}

/// `GET /api/v1/streams/$head`: the store's head (the position at or below which every event
/// is visible) now, then each time it moves; several moves between two sends arrive as the
/// latest. Remote stores keep their `head()` from it, which is what lets their subscriptions
/// go live without polling.
pub(super) async fn head(
    State(api): State<StoreApi>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let permit = api
        .subscribers
        .clone()
        .try_acquire_owned()
        .map_err(|_| Problem::too_many_subscribers())?;
    let end = api.streams_end.clone().cancelled_owned();
    let stream = WatchStream::new(api.store.head())
        .map(move |position| {
            // Held by the stream, released when the client goes away.
            let _slot = &permit;
            let text = position.to_string();
            Ok(SseEvent::default()
                .event("head")
                .id(text.clone())
                .data(text))
        })
        .take_until(end);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEAD_KEEP_ALIVE)))
}
