//! Accepting client connections without spinning. A failed `accept` that concerns one
//! connection (aborted or reset before it was taken) is retried at once; any other failure —
//! out of descriptors (EMFILE, ENFILE), buffers (ENOBUFS) or memory — leaves the pending
//! connection in the backlog and the listener readable, so retrying at once would spin a core
//! and log on every pass. Those back off, as servers do: 10 ms doubling to 1 s, reset by the
//! next success, with one warning per episode.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The accept loop's backoff state: the next pause while failures last.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// How long to wait before accepting again after `e`; `None` to retry at once.
    pub(crate) fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if concerns_one_connection(e) {
            tracing::debug!(error = %e, "accept failed for one connection");
            return None;
        }
        let pause = match self.next {
            None => {
                tracing::warn!(error = %e, "accept failed; backing off until it succeeds");
                FIRST_PAUSE
            }
            Some(p) => {
                tracing::debug!(error = %e, pause_ms = p.as_millis() as u64, "accept still failing");
                p
            }
        };
        self.next = Some((pause * 2).min(MAX_PAUSE));
        Some(pause)
    }

    /// Ends a failure episode, if one was running.
    pub(crate) fn succeeded(&mut self) {
        if self.next.take().is_some() {
            tracing::info!("accepting connections again");
        }
    }
}

fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The next client connection, backing off on failures; `None` once `shutdown` is cancelled.
pub(crate) async fn next(
    listener: &TcpListener,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => return None,
        };
        let e = match accepted {
            Ok(client) => {
                backoff.succeeded();
                return Some(client);
            }
            Err(e) => e,
        };
        if let Some(pause) = backoff.failed(&e) {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMFILE: i32 = 24;

    #[test]
    fn pauses_double_to_a_second_and_reset_after_a_success() {
        let mut b = Backoff::default();
        let out_of_files = io::Error::from_raw_os_error(EMFILE);
        let pauses: Vec<u64> = (0..9)
            .map(|_| b.failed(&out_of_files).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&out_of_files), Some(FIRST_PAUSE));
    }

    #[test]
    fn a_failure_of_one_connection_is_retried_at_once() {
        let mut b = Backoff::default();
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert_eq!(b.failed(&io::Error::from(kind)), None);
        }
        let no_memory = io::Error::from(io::ErrorKind::OutOfMemory);
        assert_eq!(b.failed(&no_memory), Some(FIRST_PAUSE));
    }
}
