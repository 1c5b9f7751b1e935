//! What every transactional outbox shares, whatever database holds it: turning a stored row
//! back into an [`Outgoing`], and the relay loop that drains the outbox into a backend.

use std::future::Future;
use std::time::{Duration, SystemTime};

use flotilla_core::{CloudEvent, TopicName};
use tokio_util::sync::CancellationToken;

use crate::{Error, Outgoing};

/// Rebuilds the event stored as outbox row `id`; a row that no longer decodes is reported with
/// its id, since it was valid when it was enqueued.
pub fn decode_entry(
    id: i64,
    topic: String,
    event_json: &[u8],
    not_before: Option<SystemTime>,
) -> Result<Outgoing, Error> {
    let corrupt = |e: String| Error::Backend(format!("outbox entry {id}: {e}"));
    let topic = TopicName::new(topic).map_err(|e| corrupt(e.to_string()))?;
    let event = CloudEvent::from_json_slice(event_json).map_err(|e| corrupt(e.to_string()))?;
    let out = Outgoing::new(topic, event);
    Ok(match not_before {
        Some(at) => out.deliver_at(at),
        None => out,
    })
}

/// Calls `relay_once` (which answers how many events it relayed) until `shutdown`: again at
/// once after a full round, after `idle_poll` when the outbox was empty, and a second after a
/// failure, which is logged.
pub async fn relay_until<F, Fut>(
    shutdown: CancellationToken,
    idle_poll: Duration,
    mut relay_once: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, Error>>,
{
    while !shutdown.is_cancelled() {
        let pause = match relay_once().await {
            Ok(0) => idle_poll,
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay failed; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
