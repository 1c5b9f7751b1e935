//! What operators and APIs ask of an orchestrator beyond starting and waiting: idempotent
//! starts under a caller's id, listing, the timeline of one instance, retrying a stuck one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use flotilla_eventstore::{ExpectedVersion, ReadStream};
use serde::Serialize;
use serde_json::Value;

use super::{Orchestrator, invalid, stream};
use crate::definition::SagaDefinition;
use crate::event::SagaEvent;
use crate::state::{SagaState, SagaStatus};
use crate::{Error, Result};

/// What [`Orchestrator::start_with_id`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The instance id.
    pub id: String,
    /// False when an instance with this id and the same input already existed.
    pub created: bool,
}

/// One event of an instance's stream, with when it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// The event's version in the stream (1 is `SagaStarted`).
    pub version: u64,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The event's stored type (`StepFailed`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event.
    pub event: SagaEvent,
}

/// Longest caller-chosen instance id.
const MAX_ID: usize = 128;

impl Orchestrator {
    /// Starts an instance of `name` under the caller's `id`, at most once: a repeat with
    /// the same definition name and input answers the existing instance (`created: false`);
    /// one with other content is refused as a conflict.
    pub async fn start_with_id(&self, name: &str, id: &str, data: Value) -> Result<Started> {
        self.start_with_id_in_trace(name, id, data, None).await
    }

    /// [`start_with_id`](Self::start_with_id) as part of the trace `starter`.
    pub async fn start_with_id_in_trace(
        &self,
        name: &str,
        id: &str,
        data: Value,
        starter: Option<&flotilla_core::TraceContext>,
    ) -> Result<Started> {
        check_id(id)?;
        let def = self.definition(name, None)?;
        let (new, state) = self.opening(id, &def, data.clone(), starter)?;
        let stream = stream::stream_of(id)?;
        let store = self.shared.store.as_ref();
        match stream::append_durably(store, &stream, ExpectedVersion::NoStream, new).await {
            Ok(_) => {
                self.launch(state, def);
                Ok(Started {
                    id: id.to_owned(),
                    created: true,
                })
            }
            Err(flotilla_eventstore::Error::WrongExpectedVersion { .. }) => {
                let existing = self.get(id).await?;
                if existing.definition != name || existing.data != data {
                    return Err(invalid(id, "the id is taken by a start with other input"));
                }
                Ok(Started {
                    id: id.to_owned(),
                    created: false,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The definitions registered here, every version, by name then version.
    pub fn definitions(&self) -> Vec<Arc<SagaDefinition>> {
        let defs = self
            .shared
            .definitions
            .read()
            .unwrap_or_else(|p| p.into_inner());
        defs.values().cloned().collect()
    }

    /// Instances driven by this orchestrator right now.
    pub fn in_flight(&self) -> usize {
        self.shared.running().len()
    }

    /// Every instance in the store (of definition `name`, if given), newest first. It scans
    /// the `saga` category and folds each instance's stream: an operator's tool, not a hot
    /// path.
    pub async fn list(&self, name: Option<&str>) -> Result<Vec<SagaState>> {
        let mut states = Vec::new();
        for (id, seen) in self.index().await? {
            if name.is_some_and(|n| n != seen.definition) {
                continue;
            }
            states.push(self.get(&id).await?);
        }
        states.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        Ok(states)
    }

    /// The instance's events in order, each with when it was recorded.
    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>> {
        let stream = stream::stream_of(id)?;
        let events = self
            .shared
            .store
            .read_stream(&stream, ReadStream::forward(1, usize::MAX))
            .await?;
        if events.is_empty() {
            return Err(Error::NotFound(id.to_owned()));
        }
        events
            .iter()
            .map(|e| {
                let event = SagaEvent::from_recorded(e)?;
                Ok(TimelineEntry {
                    version: e.version,
                    recorded_at: e.recorded_at,
                    kind: event.kind(),
                    event,
                })
            })
            .collect()
    }

    /// Gives a stuck instance another go: the compensation (or, past the pivot, the step)
    /// that ran out of attempts gets a fresh retry budget and runs again now. Refused unless
    /// the instance is stuck.
    pub async fn retry(&self, id: &str) -> Result<SagaState> {
        loop {
            let mut state = self.get(id).await?;
            if !matches!(state.status, SagaStatus::Stuck { .. }) {
                return Err(invalid(id, "only a stuck instance can be retried"));
            }
            let def = self.definition(&state.definition, Some(state.version))?;
            let event = SagaEvent::Retried {
                at: self.shared.now(),
            };
            let store = self.shared.store.as_ref();
            if let stream::Appended::Yes = stream::append(store, &mut state, event).await? {
                self.observe_resumed(&state);
                self.drive(state.clone(), def);
                return Ok(state);
            }
        }
    }
}

impl Orchestrator {
    pub(super) fn observe_resumed(&self, state: &SagaState) {
        for o in &self.shared.observers {
            o.resumed(state);
        }
    }
}

/// A caller's id becomes part of a stream id: a short run of letters, digits, `-`, `_`, `.`
/// and `:`.
fn check_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > MAX_ID || !id.chars().all(ok_char) {
        let reason = format!("{id:?} must be 1 to {MAX_ID} letters, digits, '-', '_', '.' or ':'");
        return Err(Error::input("id", reason));
    }
    Ok(())
}
