//! Ctrl-C and SIGTERM: how a user or a supervisor stops a long-running command.

use std::future::Future;

/// Installs the SIGINT and (on Unix) SIGTERM handlers now and returns a future that resolves
/// when one arrives. Installed before a command says it is following, so a signal sent the
/// moment that line is read stops it cleanly instead of killing it.
pub(crate) fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        let recv = |s: Option<Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                // No handler could be installed: never resolve rather than stop at once.
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = recv(interrupt) => {}
                () = recv(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
