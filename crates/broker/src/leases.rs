//! Flow control of SSE streams: each delivery a stream sends holds one of the stream's
//! in-flight slots until the client settles it (ack, nack or reject through the usual
//! endpoints) or its lease ends (the backend then offers it again, to any consumer).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use flotilla_bus::Receipt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Deliveries sent over SSE and not yet settled, across every stream of the broker.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<Key, Held>>,
}

type Key = (String, String);

#[derive(Debug)]
struct Held {
    /// The stream's in-flight slot; dropping it lets the stream send one more.
    _slot: OwnedSemaphorePermit,
    until: Instant,
}

fn key(r: &Receipt) -> Key {
    (r.group.as_str().to_owned(), r.token.clone())
}

impl Leases {
    fn held(&self) -> MutexGuard<'_, HashMap<Key, Held>> {
        // The map stays consistent even if a holder panicked: every operation is one insert
        // or remove.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `slot` for `receipt` until it is settled or `until` passes.
    pub(crate) fn hold(&self, receipt: &Receipt, slot: OwnedSemaphorePermit, until: Instant) {
        let held = Held { _slot: slot, until };
        self.held().insert(key(receipt), held);
    }

    /// The delivery is settled (or its receipt is dead): frees its slot. Receipts no stream
    /// sent (long-poll pulls) are ignored.
    pub(crate) fn settled(&self, receipt: &Receipt) {
        self.held().remove(&key(receipt));
    }

    /// Frees the slots of deliveries whose lease has ended.
    pub(crate) fn expire(&self, now: Instant) {
        self.held().retain(|_, h| h.until > now);
    }

    /// How many deliveries are held (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use flotilla_bus::GroupName;
    use tokio::sync::Semaphore;

    use super::*;

    fn receipt(token: &str) -> Receipt {
        Receipt {
            group: GroupName::new("g").expect("a valid group name"),
            token: token.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_freed_by_settling_or_by_the_lease_ending() {
        let window = Arc::new(Semaphore::new(2));
        let leases = Leases::default();
        let now = Instant::now();
        for (t, lease) in [("a", 10), ("b", 1)] {
            let slot = window.clone().try_acquire_owned().expect("a free slot");
            leases.hold(&receipt(t), slot, now + Duration::from_secs(lease));
        }
        assert_eq!(window.available_permits(), 0);
        leases.settled(&receipt("a"));
        assert_eq!(window.available_permits(), 1);
        leases.expire(now + Duration::from_secs(2));
        assert_eq!((window.available_permits(), leases.len()), (2, 0));
    }
}
