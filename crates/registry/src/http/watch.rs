//! Server-sent events: a snapshot per change of one service, or every change of all services.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query as RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flotilla_core::ServiceName;
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::api::discovery_query;
use crate::{Error, Registry};

/// `GET /api/v1/registry/watch?service=NAME`: a `snapshot` event (revision and every instance)
/// now and after each change of that service. Without `service`: a `change` event per change
/// of any service, and `resync` when this watcher fell too far behind (re-read the lists).
pub(super) async fn stream(
    State(r): State<Registry>,
    RawQuery(pairs): RawQuery<Vec<(String, String)>>,
) -> Result<Response, Error> {
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    let service = pairs
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let Some(name) = service else {
        return Ok(Sse::new(all_changes(&r))
            .keep_alive(keep_alive)
            .into_response());
    };
    let name = ServiceName::new(name)?;
    let query = discovery_query(&[("status".to_owned(), "any".to_owned())])?;
    let rx = r.slot(&name).subscribe();
    let events = WatchStream::new(rx).map(move |_| {
        let (revision, instances) = r.instances(&name, &query);
        let data =
            serde_json::json!({ "service": name, "revision": revision, "instances": instances });
        Ok::<_, Infallible>(
            Event::default()
                .event("snapshot")
                .id(revision.to_string())
                .data(data.to_string()),
        )
    });
    Ok(Sse::new(events).keep_alive(keep_alive).into_response())
}

fn all_changes(r: &Registry) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    BroadcastStream::new(r.changes()).map(|item| {
        let event = match item {
            Ok(change) => Event::default()
                .event("change")
                .data(serde_json::to_string(&change).unwrap_or_default()),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("resync").data(n.to_string())
            }
        };
        Ok(event)
    })
}
