//! The in-memory event store: for tests, examples and the SDK's test kit. Nothing survives the
//! process; every other guarantee of the contract holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use flotilla_core::StreamId;
use tokio::sync::watch;
use uuid::Uuid;

use crate::model::{
    AppendResult, Direction, ExpectedVersion, NewEvent, Position, ReadAll, ReadStream,
    RecordedEvent, Snapshot, StreamInfo, Version, validate_batch, validate_limit,
};
use crate::plan::{Plan, StreamState, plan_append};
use crate::store::{EventStore, validate_subscriber};
use crate::{Error, Result};

#[derive(Debug, Default)]
struct StreamEntry {
    version: Option<Version>,
    deleted: bool,
    /// Position of each stored event by version (truncated versions are absent).
    positions: BTreeMap<Version, Position>,
}

#[derive(Debug, Default)]
struct State {
    events: BTreeMap<Position, RecordedEvent>,
    streams: HashMap<StreamId, StreamEntry>,
    ids: HashMap<Uuid, Position>,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, Position>,
    last_position: Position,
}

/// An event store held in memory behind one lock.
#[derive(Debug)]
pub struct MemoryEventStore {
    state: Mutex<State>,
    head: watch::Sender<Position>,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            head: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated: every mutation
        // below is decided before the first write.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn stream_state(&self, stream: &StreamId) -> StreamState {
        self.streams
            .get(stream)
            .map_or_else(StreamState::default, |s| StreamState {
                version: s.version,
                deleted: s.deleted,
            })
    }

    fn live_stream(&self, stream: &StreamId) -> Result<Option<&StreamEntry>> {
        match self.streams.get(stream) {
            Some(s) if s.deleted => Err(Error::StreamDeleted {
                stream: stream.clone(),
            }),
            other => Ok(other),
        }
    }

    fn write(&mut self, stream: &StreamId, first: Version, events: Vec<NewEvent>) -> AppendResult {
        let now = Utc::now();
        let entry = self.streams.entry(stream.clone()).or_default();
        let mut version = first;
        for e in events {
            self.last_position += 1;
            let position = self.last_position;
            entry.positions.insert(version, position);
            self.ids.insert(e.id, position);
            let recorded = RecordedEvent {
                id: e.id,
                stream: stream.clone(),
                version,
                position,
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
                recorded_at: now,
            };
            self.events.insert(position, recorded);
            version += 1;
        }
        entry.version = Some(version - 1);
        AppendResult {
            first_version: first,
            last_version: version - 1,
            last_position: self.last_position,
        }
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate_batch(&events)?;
        let result = {
            let mut st = self.lock();
            let stored: Vec<_> = events
                .iter()
                .map(|e| st.ids.get(&e.id).and_then(|p| st.events.get(p)).cloned())
                .collect();
            match plan_append(stream, expected, st.stream_state(stream), &events, &stored)? {
                Plan::AlreadyStored(r) => return Ok(r),
                Plan::Write { first_version } => st.write(stream, first_version, events),
            }
        };
        self.head.send_if_modified(|h| {
            let grew = result.last_position > *h;
            *h = (*h).max(result.last_position);
            grew
        });
        Ok(result)
    }

    async fn read_stream(&self, stream: &StreamId, read: ReadStream) -> Result<Vec<RecordedEvent>> {
        validate_limit(read.limit)?;
        let st = self.lock();
        let Some(entry) = st.live_stream(stream)? else {
            return Ok(Vec::new());
        };
        let in_range = entry.positions.iter().filter(|(v, _)| read.includes(**v));
        let pick = |(_, p): (&Version, &Position)| st.events.get(p).cloned();
        Ok(match read.direction {
            Direction::Forward => in_range.filter_map(pick).take(read.limit).collect(),
            Direction::Backward => in_range.rev().filter_map(pick).take(read.limit).collect(),
        })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>> {
        Ok(self.lock().live_stream(stream)?.and_then(|s| s.version))
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>> {
        validate_limit(read.limit)?;
        let st = self.lock();
        Ok(st
            .events
            .range(read.after.saturating_add(1)..)
            .map(|(_, e)| e)
            .filter(|e| read.filter.matches(e))
            .take(read.limit)
            .cloned()
            .collect())
    }

    async fn delete_stream(&self, stream: &StreamId, expected: ExpectedVersion) -> Result<()> {
        let mut st = self.lock();
        let state = st.stream_state(stream);
        if state.deleted {
            return Ok(());
        }
        if !expected.admits(state.version) {
            return Err(Error::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: state.version,
            });
        }
        st.streams.entry(stream.clone()).or_default().deleted = true;
        st.snapshots.remove(stream);
        Ok(())
    }

    async fn truncate_stream(&self, stream: &StreamId, before: Version) -> Result<u64> {
        let mut st = self.lock();
        let Some(entry) = st.streams.get_mut(stream) else {
            return Ok(0);
        };
        let keep = entry.positions.split_off(&before);
        let removed = std::mem::replace(&mut entry.positions, keep);
        for p in removed.values() {
            if let Some(e) = st.events.remove(p) {
                st.ids.remove(&e.id);
            }
        }
        Ok(removed.len() as u64)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut st = self.lock();
        let version = st.live_stream(&snapshot.stream)?.and_then(|s| s.version);
        check_snapshot_version(&snapshot, version)?;
        st.snapshots.insert(snapshot.stream.clone(), snapshot);
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let st = self.lock();
        st.live_stream(stream)?;
        Ok(st.snapshots.get(stream).cloned())
    }

    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>> {
        validate_limit(limit)?;
        let st = self.lock();
        let mut all: Vec<StreamInfo> = st
            .streams
            .iter()
            .filter(|(id, _)| after.is_none_or(|a| *id > a))
            .map(|(id, s)| StreamInfo {
                stream: id.clone(),
                version: s.version,
                deleted: s.deleted,
            })
            .collect();
        all.sort_by(|a, b| a.stream.cmp(&b.stream));
        all.truncate(limit);
        Ok(all)
    }

    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>> {
        let mut all: Vec<_> = self
            .lock()
            .checkpoints
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Position>> {
        validate_subscriber(subscriber)?;
        Ok(self.lock().checkpoints.get(subscriber).copied())
    }

    async fn save_checkpoint(&self, subscriber: &str, position: Position) -> Result<()> {
        validate_subscriber(subscriber)?;
        self.lock()
            .checkpoints
            .insert(subscriber.to_owned(), position);
        Ok(())
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// Refuses a snapshot that claims to cover events the stream does not have.
pub fn check_snapshot_version(snapshot: &Snapshot, version: Option<Version>) -> Result<()> {
    if snapshot.version == 0 || Some(snapshot.version) > version {
        return Err(Error::InvalidInput(format!(
            "snapshot of {} at version {} is beyond the stream's version ({})",
            snapshot.stream,
            snapshot.version,
            version.map_or_else(|| "no stream".into(), |v| v.to_string())
        )));
    }
    Ok(())
}
