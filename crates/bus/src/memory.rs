//! The in-memory backend: the whole contract, nothing durable.
//!
//! For tests, examples and single-process development. "Durable" here means "in this
//! process's memory": everything is lost when the process ends. Time for visibility, leases
//! and the dedupe window comes from `tokio::time`, so tests with paused time drive it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use flotilla_core::{CloudEvent, TopicName};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Backend, Capabilities, DeadLetter, Delivery, DlqQuery, Error, Failure, GroupInfo, GroupName,
    GroupSpec, Outgoing, PublishOutcome, Receipt, TopicInfo,
};

/// The default publisher-dedupe window.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// An in-memory [`Backend`]; clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Notify,
    dedupe_window: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    next_lease: u64,
    next_dlq: u64,
    groups: BTreeMap<GroupName, Group>,
    topics: BTreeMap<TopicName, u64>,
    dedupe: HashMap<(String, String), Instant>,
    dlq: BTreeMap<u64, DeadLetter>,
}

#[derive(Debug)]
struct Group {
    spec: GroupSpec,
    entries: BTreeMap<u64, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    topic: TopicName,
    event: CloudEvent,
    key: Option<String>,
    published_at: SystemTime,
    /// Deliverable from then; while leased, the lease's end.
    visible_at: Instant,
    attempts: u32,
    lease: Option<u64>,
}

impl MemoryBackend {
    /// An empty bus with the default dedupe window.
    pub fn new() -> Self {
        Self::with_dedupe_window(DEFAULT_DEDUPE_WINDOW)
    }

    /// An empty bus remembering published `(source, id)` pairs for `window`.
    pub fn with_dedupe_window(window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                dedupe_window: Some(window),
                ..Inner::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn window(&self) -> Duration {
        self.inner.dedupe_window.unwrap_or(DEFAULT_DEDUPE_WINDOW)
    }
}

impl State {
    fn publish_one(&mut self, out: Outgoing, window: Duration, now: Instant) -> PublishOutcome {
        let id = (out.event.source.clone(), out.event.id.clone());
        if let Some(seen) = self.dedupe.get(&id)
            && now.duration_since(*seen) < window
        {
            return PublishOutcome::Duplicate;
        }
        self.dedupe.insert(id, now);
        *self.topics.entry(out.topic.clone()).or_default() += 1;
        self.next_seq += 1;
        let visible_at = visible_from(out.not_before, now);
        let entry = Entry {
            key: out.ordering_key().map(str::to_owned),
            topic: out.topic,
            event: out.event,
            published_at: SystemTime::now(),
            visible_at,
            attempts: 0,
            lease: None,
        };
        for group in self.groups.values_mut() {
            if group.spec.pattern.matches(&entry.topic) {
                group.entries.insert(self.next_seq, entry.clone());
            }
        }
        PublishOutcome::Stored
    }

    fn lease(&mut self, group: &GroupName, max: usize, lease: Duration) -> Vec<Delivery> {
        let now = Instant::now();
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let mut blocked_keys = HashSet::new();
        let mut out = Vec::new();
        for (seq, e) in g.entries.iter_mut() {
            if out.len() >= max {
                break;
            }
            // An earlier event with the same key, in any state, holds the key.
            if let Some(k) = &e.key
                && !blocked_keys.insert(k.clone())
            {
                continue;
            }
            if e.visible_at > now {
                continue;
            }
            self.next_lease += 1;
            e.lease = Some(self.next_lease);
            e.visible_at = now + lease;
            e.attempts += 1;
            out.push(Delivery {
                receipt: Receipt {
                    group: group.clone(),
                    token: format!("{seq}:{}", self.next_lease),
                },
                topic: e.topic.clone(),
                event: e.event.clone(),
                attempt: e.attempts,
                published_at: e.published_at,
            });
        }
        out
    }

    /// The next time something in `group` becomes deliverable. Entries already visible but
    /// held back by their ordering key are not counted: an ack wakes their waiters.
    fn next_visible(&self, group: &GroupName) -> Option<Instant> {
        let now = Instant::now();
        let g = self.groups.get(group)?;
        g.entries
            .values()
            .map(|e| e.visible_at)
            .filter(|t| *t > now)
            .min()
    }

    fn held(&mut self, receipt: &Receipt) -> Result<(u64, &mut Group), Error> {
        let (seq, lease) = parse_token(&receipt.token)?;
        let group = self
            .groups
            .get_mut(&receipt.group)
            .ok_or_else(|| not_found("group", receipt.group.as_str()))?;
        match group.entries.get(&seq) {
            Some(e) if e.lease == Some(lease) => Ok((seq, group)),
            _ => Err(Error::LeaseLost),
        }
    }
}

fn visible_from(not_before: Option<SystemTime>, now: Instant) -> Instant {
    let delay = not_before
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .unwrap_or_default();
    now + delay
}

fn parse_token(token: &str) -> Result<(u64, u64), Error> {
    let bad = || Error::InvalidInput(format!("receipt token {token:?} is not a memory receipt"));
    let (a, b) = token.split_once(':').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

fn not_found(what: &'static str, id: &str) -> Error {
    Error::NotFound {
        what,
        id: id.to_owned(),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn declare_group(&self, spec: &GroupSpec) -> Result<(), Error> {
        let mut st = self.state();
        if let Some(g) = st.groups.get(&spec.name) {
            return check_same_pattern(&g.spec, spec);
        }
        let group = Group {
            spec: spec.clone(),
            entries: BTreeMap::new(),
        };
        st.groups.insert(spec.name.clone(), group);
        Ok(())
    }

    async fn delete_group(&self, group: &GroupName) -> Result<(), Error> {
        let mut st = self.state();
        st.groups.remove(group);
        st.dlq.retain(|_, d| d.group != *group);
        Ok(())
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> Result<Vec<PublishOutcome>, Error> {
        for out in &batch {
            out.event.validate()?;
        }
        let window = self.window();
        let now = Instant::now();
        let outcomes = {
            let mut st = self.state();
            batch
                .into_iter()
                .map(|o| st.publish_one(o, window, now))
                .collect()
        };
        self.inner.changed.notify_waiters();
        Ok(outcomes)
    }

    async fn receive(
        &self,
        group: &GroupName,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let now = Instant::now();
        let deadline = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, next) = {
                let mut st = self.state();
                if !st.groups.contains_key(group) {
                    return Err(not_found("group", group.as_str()));
                }
                (st.lease(group, max.max(1), lease), st.next_visible(group))
            };
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            let wake = next.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), Error> {
        let mut st = self.state();
        let (seq, group) = st.held(receipt)?;
        group.entries.remove(&seq);
        drop(st);
        // An ack may unblock the next event with the same ordering key.
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), Error> {
        let mut st = self.state();
        let (seq, group) = st.held(receipt)?;
        if let Some(e) = group.entries.get_mut(&seq) {
            e.lease = None;
            // Saturate rather than overflow on an absurd delay from a caller.
            let now = Instant::now();
            e.visible_at = now
                .checked_add(delay)
                .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        }
        drop(st);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, failure: Failure) -> Result<(), Error> {
        let mut st = self.state();
        let (seq, group) = st.held(receipt)?;
        let Some(e) = group.entries.remove(&seq) else {
            return Err(Error::LeaseLost);
        };
        st.next_dlq += 1;
        let id = st.next_dlq;
        let dl = DeadLetter {
            id: id.to_string(),
            group: receipt.group.clone(),
            topic: e.topic,
            event: e.event,
            reason: failure.reason,
            attempts: e.attempts,
            last_error: failure.last_error,
            published_at: e.published_at,
            dead_lettered_at: SystemTime::now(),
        };
        st.dlq.insert(id, dl);
        drop(st);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn dlq_list(&self, query: &DlqQuery) -> Result<Vec<DeadLetter>, Error> {
        let after = match &query.after {
            Some(a) => dlq_id(a)?,
            None => 0,
        };
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let st = self.state();
        Ok(st
            .dlq
            .range(after + 1..)
            .map(|(_, d)| d)
            .filter(|d| query.group.as_ref().is_none_or(|g| *g == d.group))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn dlq_get(&self, id: &str) -> Result<DeadLetter, Error> {
        let key = dlq_id(id)?;
        let st = self.state();
        st.dlq
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found("dead letter", id))
    }

    async fn dlq_replay(&self, id: &str) -> Result<(), Error> {
        let key = dlq_id(id)?;
        let mut st = self.state();
        let dl = st
            .dlq
            .remove(&key)
            .ok_or_else(|| not_found("dead letter", id))?;
        st.next_seq += 1;
        let seq = st.next_seq;
        let Some(group) = st.groups.get_mut(&dl.group) else {
            return Err(not_found("group", dl.group.as_str()));
        };
        let entry = Entry {
            key: dl
                .event
                .extension_str(crate::EXT_PARTITION_KEY)
                .map(str::to_owned),
            topic: dl.topic,
            event: dl.event,
            published_at: dl.published_at,
            visible_at: Instant::now(),
            attempts: 0,
            lease: None,
        };
        group.entries.insert(seq, entry);
        drop(st);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn dlq_purge(&self, group: &GroupName, ids: &[String]) -> Result<u64, Error> {
        let wanted: HashSet<u64> = ids.iter().map(|i| dlq_id(i)).collect::<Result<_, _>>()?;
        let mut st = self.state();
        let before = st.dlq.len();
        st.dlq
            .retain(|k, d| d.group != *group || !(wanted.is_empty() || wanted.contains(k)));
        Ok((before - st.dlq.len()) as u64)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, Error> {
        let st = self.state();
        Ok(st
            .topics
            .iter()
            .map(|(name, n)| TopicInfo {
                name: name.clone(),
                published: *n,
            })
            .collect())
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, Error> {
        let st = self.state();
        Ok(st
            .groups
            .values()
            .map(|g| GroupInfo {
                spec: g.spec.clone(),
                pending: g.entries.len() as u64,
                dead_letters: st.dlq.values().filter(|d| d.group == g.spec.name).count() as u64,
            })
            .collect())
    }
}

/// Shared by backends: a re-declaration must name the same pattern.
pub fn check_same_pattern(existing: &GroupSpec, wanted: &GroupSpec) -> Result<(), Error> {
    if existing.pattern == wanted.pattern {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "group {:?} is declared with pattern {:?}, not {:?}",
        existing.name.as_str(),
        existing.pattern.as_str(),
        wanted.pattern.as_str()
    )))
}

fn dlq_id(id: &str) -> Result<u64, Error> {
    id.parse()
        .map_err(|_| Error::InvalidInput(format!("dead-letter id {id:?} is not a number")))
}
