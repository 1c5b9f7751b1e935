//! Managed parts of a service (event subscriptions, hosted projections): started before the
//! service reports ready, told to stop taking work the moment readiness flips, and given the
//! shutdown deadline to finish what they hold.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Ends a started part: waits for it for at most the deadline, then kills it.
pub(crate) type Finish = Box<dyn FnOnce(Duration) -> BoxFuture<()> + Send>;

/// Starts a part. Its token is cancelled when the part must stop taking new work.
pub(crate) type Start =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<Result<Finish, Error>> + Send>;

/// The parts of a service, not started yet.
#[derive(Default)]
pub(crate) struct Parts {
    starts: Vec<Start>,
}

impl Parts {
    #[cfg_attr(
        not(any(feature = "events", feature = "eventsourcing")),
        allow(dead_code, reason = "only event handlers and projections are parts")
    )]
    pub(crate) fn add(&mut self, start: Start) {
        self.starts.push(start);
    }

    /// Starts every part in order. If one fails, those already started are stopped (within
    /// `deadline`) and the failure is returned.
    pub(crate) async fn start(self, deadline: Duration) -> Result<Started, Error> {
        let mut started = Started {
            stop: CancellationToken::new(),
            finishes: Vec::with_capacity(self.starts.len()),
        };
        for start in self.starts {
            match start(started.stop.clone()).await {
                Ok(finish) => started.finishes.push(finish),
                Err(e) => {
                    let _ = started.stop(deadline).await;
                    return Err(e);
                }
            }
        }
        Ok(started)
    }
}

/// Running parts.
pub(crate) struct Started {
    stop: CancellationToken,
    finishes: Vec<Finish>,
}

impl Started {
    /// Tells every part to stop taking work at once, and finishes them all concurrently in
    /// the background, each within `deadline`. Await the handle to know they are done.
    pub(crate) fn stop(self, deadline: Duration) -> JoinHandle<()> {
        self.stop.cancel();
        let finishing = self
            .finishes
            .into_iter()
            .map(move |finish| finish(deadline));
        tokio::spawn(async move {
            futures_util::future::join_all(finishing).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(log: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>, fail: bool) -> Start {
        Box::new(move |stop: CancellationToken| {
            Box::pin(async move {
                if fail {
                    return Err(Error::Setup("refused".into()));
                }
                let finish: Finish = Box::new(move |_| {
                    Box::pin(async move {
                        stop.cancelled().await;
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push("stopped");
                    })
                });
                Ok(finish)
            })
        })
    }

    #[tokio::test]
    async fn a_failing_part_stops_the_parts_started_before_it() {
        let log = std::sync::Arc::default();
        let mut parts = Parts::default();
        parts.add(part(std::sync::Arc::clone(&log), false));
        parts.add(part(std::sync::Arc::clone(&log), true));
        let result = parts.start(Duration::from_secs(1)).await;
        assert!(matches!(result, Err(Error::Setup(_))));
        assert_eq!(*log.lock().unwrap_or_else(|p| p.into_inner()), ["stopped"]);
    }
}
