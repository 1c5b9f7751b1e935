//! One registry among several sharing a catalog: it follows the others' changes, keeps a lease
//! that says it is alive, and runs the health checks of the instances it owns.
//!
//! Ownership is rendezvous hashing of the instance over the live replicas: every replica that
//! sees the same live set picks the same owner, and when a replica's lease ends only its own
//! instances move. Lease views can briefly differ during a change of membership, so an
//! instance may be probed twice for a moment; results go through conditional writes, so that
//! costs a probe, never a lost update.

use std::sync::Mutex;
use std::time::Duration;

use flotilla_core::ServiceName;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::{AbortHandle, JoinHandle};

use crate::Registry;
use crate::check::runner::FirstProbe;

/// This replica's identity and its latest view of the live replicas.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) id: String,
    live: Mutex<Vec<String>>,
}

impl Replica {
    /// A new identity: the node name plus a random part, unique per start.
    pub(crate) fn new(node_name: &str) -> Self {
        Self {
            id: format!("{node_name}-{:016x}", rand::random::<u64>()),
            live: Mutex::default(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The owner of `key` among `live` (rendezvous hashing: the highest score wins).
fn owner<'a>(live: &'a [String], service: &ServiceName, id: &str) -> Option<&'a str> {
    live.iter()
        .max_by_key(|replica| score(replica, service.as_str(), id))
        .map(String::as_str)
}

/// FNV-1a over the replica and the instance: stable across builds and platforms, which the
/// standard library's hasher does not promise, and every replica must agree.
fn score(replica: &str, service: &str, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [replica, service, id] {
        for byte in part.bytes().chain([0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    // FNV's low bits mix poorly for short inputs; a final avalanche spreads them.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// Aborts the replica's tasks and every check task when `run` ends, or when its future is
/// dropped (a crash as far as the other replicas are concerned: no `leave`).
pub(crate) struct StopOnDrop {
    pub(crate) registry: Registry,
    pub(crate) tasks: Vec<AbortHandle>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.registry.stop_all_checks();
    }
}

impl Registry {
    /// Whether the catalog is shared with other replicas.
    pub(crate) fn is_shared(&self) -> bool {
        self.inner.catalog.shared().is_some()
    }

    /// Whether this replica runs a health check of instance `id` now (only instances with a
    /// check have one). With a catalog of its own a running registry checks every instance;
    /// with a shared one, those it owns among the live replicas.
    pub fn runs_check(&self, service: &ServiceName, id: &str) -> bool {
        let key = (service.clone(), id.to_owned());
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
    }

    /// This replica's id in the shared catalog's lease table.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica.id
    }

    /// Whether this replica should check instance `id`. Before the first lease renewal
    /// answered (the store unreachable at start) it checks everything: double probes are
    /// harmless, unchecked instances are not.
    pub(crate) fn owns(&self, service: &ServiceName, id: &str) -> bool {
        let live = self.inner.replica.live();
        live.is_empty() || owner(&live, service, id) == Some(self.inner.replica.id.as_str())
    }

    /// Starts the replica's tasks: renew the lease, follow the other replicas' changes, and
    /// start or stop checks as changes and membership move ownership.
    pub(crate) async fn start_replica(&self) -> Vec<JoinHandle<()>> {
        let changes = self.changes();
        self.renew_lease().await;
        self.reconcile_all(FirstProbe::Jittered);
        let me = self.clone();
        let leases = tokio::spawn(async move {
            let every = me.options().replica_lease / 3;
            loop {
                tokio::time::sleep(every).await;
                me.renew_lease().await;
            }
        });
        let me = self.clone();
        let follow = tokio::spawn(async move { me.follow().await });
        let me = self.clone();
        let reconcile = tokio::spawn(async move { me.reconcile_changes(changes).await });
        vec![leases, follow, reconcile]
    }

    /// Ends this replica's lease so the others take its checks over at once.
    pub(crate) async fn leave(&self) {
        if let Some(shared) = self.inner.catalog.shared()
            && let Err(e) = shared.leave(&self.inner.replica.id).await
        {
            tracing::warn!(error = %e, "cannot end the registry replica's lease");
        }
    }

    async fn renew_lease(&self) {
        let Some(shared) = self.inner.catalog.shared() else {
            return;
        };
        let lease = self.options().replica_lease;
        match shared.renew(&self.inner.replica.id, lease).await {
            Ok(live) => {
                let moved = {
                    let mut current = self.inner.replica.live();
                    let moved = *current != live;
                    *current = live;
                    moved
                };
                if moved {
                    tracing::info!(replicas = ?self.inner.replica.live(), "registry replicas changed");
                    self.reconcile_all(FirstProbe::Jittered);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the registry replica's lease"),
        }
    }

    /// Applies the other replicas' changes as soon as a notification says there are some, and
    /// at least every `catch_up_interval` in case one was lost.
    async fn follow(&self) {
        let Some(shared) = self.inner.catalog.shared() else {
            return;
        };
        let mut wakes = shared.notifications();
        let every = self.options().catch_up_interval;
        loop {
            tokio::select! {
                heard = wakes.changed() => if heard.is_err() {
                    tokio::time::sleep(every).await;
                },
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.inner.catalog.sync().await {
                tracing::warn!(error = %e, "cannot read the other registry replicas' changes");
            }
        }
    }

    async fn reconcile_changes(
        &self,
        mut changes: tokio::sync::broadcast::Receiver<crate::Change>,
    ) {
        loop {
            match changes.recv().await {
                Ok(change) => self.reconcile(&change.service, &change.id, FirstProbe::Now),
                Err(RecvError::Lagged(_)) => self.reconcile_all(FirstProbe::Jittered),
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn reconcile_all(&self, first: FirstProbe) {
        for (service, slot) in self.inner.catalog.all_slots() {
            for record in slot.records() {
                self.reconcile(&service, &record.instance.id, first);
            }
        }
        // Checks of instances gone from the catalog.
        let running: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for (service, id) in running {
            if self.record(&service, &id).is_none() {
                self.stop_check(&service, &id);
            }
        }
    }

    /// Runs the check of instance `id` here if this replica owns it (keeping a running one
    /// whose instance and check are unchanged), stops it otherwise.
    fn reconcile(&self, service: &ServiceName, id: &str, first: FirstProbe) {
        match self.record(service, id) {
            Some(record) if self.owns(service, id) => self.ensure_check(&record, first),
            _ => self.stop_check(service, id),
        }
    }

    /// When a heartbeat reached another replica less than `ttl` ago, the time left until it
    /// expires: the TTL check here must not fail an instance that reports elsewhere.
    pub(crate) async fn ttl_left(
        &self,
        service: &ServiceName,
        id: &str,
        ttl: Duration,
    ) -> Option<Duration> {
        let shared = self.inner.catalog.shared()?;
        match shared.since_beat(service, id).await {
            Ok(Some(since)) if since < ttl => Some(ttl - since),
            Ok(_) => None,
            Err(e) => {
                // Failing an instance because the store is unreachable would be wrong too;
                // give it one more TTL.
                tracing::warn!(%service, id, error = %e, "cannot read the shared heartbeat time");
                Some(ttl)
            }
        }
    }

    /// Records a heartbeat where every replica's TTL check can see it.
    pub(crate) async fn share_beat(
        &self,
        service: &ServiceName,
        id: &str,
    ) -> Result<(), crate::Error> {
        if let Some(shared) = self.inner.catalog.shared() {
            shared.beat(service, id).await?;
        }
        Ok(())
    }

    /// The service of instance `id`, catching up with the other replicas once when it is not
    /// known here yet.
    pub async fn locate(&self, id: &str) -> Option<ServiceName> {
        if let Some(found) = self.find_by_id(id) {
            return Some(found);
        }
        if self.is_shared()
            && let Err(e) = self.inner.catalog.sync().await
        {
            tracing::warn!(error = %e, "cannot read the other registry replicas' changes");
        }
        self.find_by_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_replica_picks_the_same_owner_and_only_a_leavers_instances_move() {
        let users = ServiceName::new("users").unwrap();
        let three = live(3);
        let ids: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
        let before: Vec<_> = ids.iter().map(|id| owner(&three, &users, id)).collect();
        let mut counts = [0; 3];
        for o in &before {
            counts[three.iter().position(|r| Some(r.as_str()) == *o).unwrap()] += 1;
        }
        assert!(counts.iter().all(|c| *c > 50), "a fair spread: {counts:?}");
        let two = vec![three[0].clone(), three[2].clone()];
        for (id, was) in ids.iter().zip(&before) {
            let now = owner(&two, &users, id);
            if *was != Some("node-1") {
                assert_eq!(now, *was, "{id} stayed with its owner");
            }
        }
    }
}
