//! Keeping one service's cached set current: blocking queries in a loop, backoff while the
//! registry is down, the last known set kept meanwhile.

use std::sync::Weak;
use std::time::Duration;

use flotilla_core::ServiceName;
use flotilla_discovery::ServiceSet;
use rand::Rng as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::RegistryClient;
use crate::client::Inner;

/// A delay with full jitter in `[base/2, base]`, so many clients do not retry in step.
pub(crate) fn jittered(base: Duration) -> Duration {
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// Follows `service` until the client is dropped. Holds only a weak reference between polls
/// so an unused client can go away.
pub(crate) async fn follow(
    client: Weak<Inner>,
    shutdown: CancellationToken,
    service: ServiceName,
    tx: watch::Sender<ServiceSet>,
) {
    let mut index: Option<u64> = None;
    let mut backoff = None;
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let client = RegistryClient { inner };
        let (min, max, wait) = {
            let o = &client.inner.options;
            (o.min_backoff, o.max_backoff, o.wait)
        };
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = client.instances(&service, index, wait) => r,
        };
        drop(client);
        match result {
            Ok((revision, endpoints)) => {
                backoff = None;
                if index != Some(revision) {
                    tx.send_modify(|set| {
                        // Stay monotonic even if the registry's revision went backwards
                        // (a registry that lost its catalog).
                        set.revision = revision.max(set.revision + 1);
                        set.endpoints = endpoints.into();
                    });
                }
                index = Some(revision);
            }
            Err(e) => {
                let delay = backoff.map_or(min, |d: Duration| (d * 2).min(max));
                backoff = Some(delay);
                tracing::debug!(%service, error = %e, ?delay, "registry unreachable; keeping the last known set");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(jittered(delay)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_delays_stay_between_half_and_full() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(400));
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
    }
}
