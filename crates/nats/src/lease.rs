//! Per-delivery leases on top of one consumer-wide `ack_wait`.
//!
//! The contract leases each delivery for the time `receive` asks; JetStream has one
//! `ack_wait` per consumer. So consumers run with the configured `ack_wait` as the lease
//! granularity, and a keeper task sends "work in progress" (`+WPI`) for every delivery whose
//! requested lease is longer, every half `ack_wait`, until it is settled or its lease ends.
//! A lease shorter than `ack_wait` therefore ends at `ack_wait` (later, never earlier).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Leases being extended: ack subject -> when the requested lease ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct Leases(Arc<Mutex<HashMap<String, Instant>>>);

impl Leases {
    /// Keeps `token` leased until `lease` from now.
    pub(crate) fn hold(&self, token: &str, lease: Duration) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(token.to_owned(), Instant::now() + lease);
    }

    /// Stops extending `token` (settled).
    pub(crate) fn release(&self, token: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(token);
    }

    /// Drops ended leases and answers the tokens that still need extending.
    fn due(&self) -> Vec<String> {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, end| *end > now);
        map.keys().cloned().collect()
    }

    /// Sends `+WPI` for every held lease every half `ack_wait`.
    pub(crate) fn spawn_keeper(
        &self,
        client: async_nats::Client,
        ack_wait: Duration,
    ) -> JoinHandle<()> {
        let leases = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ack_wait / 2);
            loop {
                tick.tick().await;
                for token in leases.due() {
                    if let Err(e) = client.publish(token, "+WPI".into()).await {
                        tracing::warn!(error = %e, "lease extension not sent");
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn held_leases_are_due_until_they_end_or_are_released() {
        let l = Leases::default();
        l.hold("a", Duration::from_secs(10));
        l.hold("b", Duration::from_secs(1));
        assert_eq!(l.due().len(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.due(), vec!["a".to_owned()]);
        l.release("a");
        assert!(l.due().is_empty());
    }
}
