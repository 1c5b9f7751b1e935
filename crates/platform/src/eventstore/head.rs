//! Keeps a remote store's `head()` live from the control plane's `GET /api/v1/streams/$head`
//! (SSE): one long-lived connection, reopened with backoff when it drops, until the store is
//! dropped. The server sends the current head first on every connection, so a reconnect
//! catches up with whatever moved while the connection was down.

use std::time::Duration;

use flotilla_core::sse::SseParser;
use flotilla_eventstore::Position;
use http_body_util::BodyExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ControlPlane;
use crate::http::Call;

const PATH: &str = "/api/v1/streams/$head";
/// The server sends a keep-alive every 5 s on an idle stream; three missed beats mean the
/// connection is dead even if TCP has not noticed yet.
const IDLE: Duration = Duration::from_secs(15);
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Follows the head until `stop` is cancelled.
pub(super) async fn follow(
    plane: ControlPlane,
    head: watch::Sender<Position>,
    stop: CancellationToken,
) {
    let mut delay = FIRST_RETRY;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = follow_once(&plane, &head) => outcome,
        };
        match outcome {
            // A stream that delivered is a healthy server: retry soon after it drops.
            Ok(()) => delay = FIRST_RETRY,
            Err(reason) => {
                tracing::debug!(url = plane.url(), %reason, "event store head stream down")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// One connection: `Ok` when it delivered at least one head and then ended, `Err` otherwise.
async fn follow_once(plane: &ControlPlane, head: &watch::Sender<Position>) -> Result<(), String> {
    let response = plane
        .open(Call::get(PATH))
        .await
        .map_err(|e| e.to_string())?;
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut delivered = false;
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return Err(format!("no keep-alive within {IDLE:?}")),
            Ok(None) => {
                return if delivered {
                    Ok(())
                } else {
                    Err("closed".into())
                };
            }
            Ok(Some(frame)) => frame.map_err(|e| e.to_string())?,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for event in parser.push(data).map_err(|e| e.to_string())? {
            if event.name != "head" {
                continue;
            }
            let Ok(position) = event.data.trim().parse::<Position>() else {
                return Err(format!("head {:?} is not a position", event.data));
            };
            delivered = true;
            // Only forward: a head never moves back, and a reconnect may briefly repeat one.
            head.send_if_modified(|h| {
                let moved = position > *h;
                if moved {
                    *h = position;
                }
                moved
            });
        }
    }
}
