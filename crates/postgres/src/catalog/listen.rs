//! The task that turns `NOTIFY`s of catalog writes into wake-ups, on a connection of its own
//! (a listening connection cannot go back to a pool). When the connection drops it reconnects
//! and wakes everyone once, since notifications sent meanwhile are lost.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// Pause before reconnecting after a failure.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens on `channel` until `stop` is cancelled, raising `wakes` to each notified index.
pub(super) async fn run(
    url: String,
    channel: String,
    wakes: watch::Sender<u64>,
    stop: CancellationToken,
) {
    loop {
        let outcome = stop
            .run_until_cancelled(listen_once(&url, &channel, &wakes))
            .await;
        match outcome {
            None => return,
            Some(Ok(())) => tracing::warn!("catalog notifications: the connection closed"),
            Some(Err(e)) => tracing::warn!(error = %e, "catalog notifications interrupted"),
        }
        if stop
            .run_until_cancelled(tokio::time::sleep(RECONNECT))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// One connection's life: `LISTEN`, then forward notifications until it ends.
async fn listen_once(
    url: &str,
    channel: &str,
    wakes: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let forward_to = wakes.clone();
    let forward = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message? {
                let index = n.payload().parse::<u64>().unwrap_or(0);
                raise(&forward_to, index);
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let quoted = channel.replace('"', "\"\"");
    if let Err(e) = client.batch_execute(&format!("LISTEN \"{quoted}\"")).await {
        forward.abort();
        return Err(e);
    }
    // Writes made while no connection listened were not heard: wake readers to catch up.
    wakes.send_modify(|_| {});
    let ended = forward.await;
    drop(client);
    match ended {
        Ok(result) => result,
        // The forwarding task never panics; a join error means it was aborted at shutdown.
        Err(_) => Ok(()),
    }
}

/// Raises the highest index heard of, waking receivers even when it does not grow (a
/// notification with an index already heard still means "look again").
pub(super) fn raise(wakes: &watch::Sender<u64>, index: u64) {
    wakes.send_modify(|i| *i = (*i).max(index));
}
