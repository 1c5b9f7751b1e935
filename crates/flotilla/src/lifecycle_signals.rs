//! Waiting for the process signals that start a graceful shutdown.

use std::future::Future;

/// Installs the SIGINT (Ctrl-C) and, on Unix, SIGTERM handlers now, and returns a future that
/// resolves when one arrives.
///
/// The handlers are in place when this returns, not when the future is first polled: a
/// service logs "ready" right after, and a supervisor that signals it the moment it reads
/// that line must get a graceful shutdown, not the default action (death, no drain).
pub(crate) fn listen() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let recv = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    // No handler could be installed: never resolve rather than stop at once.
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = recv(interrupt.ok()) => tracing::info!("SIGINT received"),
                () = recv(terminate.ok()) => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received");
    }
}
