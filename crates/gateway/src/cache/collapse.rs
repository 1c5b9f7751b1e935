//! Request collapsing: while one request for a key is at the origin, later misses for the
//! same key wait for it instead of sending their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::key::PrimaryKey;

/// The keys with a request at the origin.
#[derive(Debug, Default)]
pub struct InFlight {
    waiting: Arc<Mutex<HashMap<PrimaryKey, watch::Receiver<()>>>>,
}

/// What a request that missed does next.
#[derive(Debug)]
pub enum Role {
    /// Go to the origin; followers wake when this guard drops (after storing, or on failure
    /// or cancellation).
    Leader(LeaderGuard),
    /// Wait for the leader with [`wait`], then look again.
    Follower(watch::Receiver<()>),
}

/// Held by the request at the origin; dropping it releases the followers.
#[derive(Debug)]
pub struct LeaderGuard {
    key: PrimaryKey,
    waiting: Arc<Mutex<HashMap<PrimaryKey, watch::Receiver<()>>>>,
    _done: watch::Sender<()>,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        let mut map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        // `_done` drops after this, which wakes every follower.
    }
}

impl InFlight {
    /// Becomes the leader for `key`, or a follower of the request already there.
    pub fn join(&self, key: &PrimaryKey) -> Role {
        let mut map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), rx);
        Role::Leader(LeaderGuard {
            key: key.clone(),
            waiting: self.waiting.clone(),
            _done: tx,
        })
    }
}

/// Waits until the leader is done (its sender dropped).
pub async fn wait(mut rx: watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CacheMethod;

    fn key(t: &str) -> PrimaryKey {
        PrimaryKey {
            route: "r".into(),
            method: CacheMethod::Get,
            host: "h".into(),
            target: t.into(),
        }
    }

    #[tokio::test]
    async fn followers_wake_when_the_leader_finishes_and_the_key_is_free_again() {
        let f = InFlight::default();
        let Role::Leader(guard) = f.join(&key("/a")) else {
            panic!("first request leads")
        };
        let Role::Follower(rx) = f.join(&key("/a")) else {
            panic!("second request follows")
        };
        assert!(
            matches!(f.join(&key("/b")), Role::Leader(_)),
            "other keys lead"
        );
        let waiter = tokio::spawn(wait(rx));
        drop(guard);
        waiter.await.unwrap();
        assert!(matches!(f.join(&key("/a")), Role::Leader(_)));
    }
}
