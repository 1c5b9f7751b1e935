//! The append decision every backend shares, so idempotency and expected-version rules are
//! one piece of code rather than one per engine.

use flotilla_core::StreamId;

use crate::model::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent, Version};
use crate::{Error, Result};

/// What an append must do, decided from the stream's state and what is stored under the
/// batch's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Write the batch starting at this version.
    Write {
        /// Version of the first new event.
        first_version: Version,
    },
    /// The batch is already stored (a retry): answer this and write nothing.
    AlreadyStored(AppendResult),
}

/// The stream's state as the backend read it inside the append's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    /// Version of the last event (`None`: never written).
    pub version: Option<Version>,
    /// Soft-deleted.
    pub deleted: bool,
}

/// Decides an append. `stored[i]` is the event already stored under `events[i].id`, if any.
pub fn plan_append(
    stream: &StreamId,
    expected: ExpectedVersion,
    state: StreamState,
    events: &[NewEvent],
    stored: &[Option<RecordedEvent>],
) -> Result<Plan> {
    if stored.iter().any(Option::is_some) {
        return already_stored(stream, events, stored).map(Plan::AlreadyStored);
    }
    if state.deleted {
        return Err(Error::StreamDeleted {
            stream: stream.clone(),
        });
    }
    if !expected.admits(state.version) {
        return Err(Error::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            actual: state.version,
        });
    }
    Ok(Plan::Write {
        first_version: state.version.unwrap_or(0) + 1,
    })
}

fn already_stored(
    stream: &StreamId,
    events: &[NewEvent],
    stored: &[Option<RecordedEvent>],
) -> Result<AppendResult> {
    let mut prev: Option<&RecordedEvent> = None;
    for (new, old) in events.iter().zip(stored) {
        let violation = |reason: &str| Error::IdempotencyViolation {
            id: new.id,
            reason: reason.to_owned(),
        };
        let Some(old) = old else {
            return Err(violation(
                "the batch mixes events already stored with new ones",
            ));
        };
        if &old.stream != stream {
            return Err(violation("already stored in another stream"));
        }
        if !old.same_content(new) {
            return Err(violation("already stored with different content"));
        }
        if prev.is_some_and(|p| p.version + 1 != old.version) {
            return Err(violation("already stored, but not as part of this batch"));
        }
        prev = Some(old);
    }
    let first = stored.first().and_then(Option::as_ref);
    let last = stored.last().and_then(Option::as_ref);
    match (first, last) {
        (Some(f), Some(l)) => Ok(AppendResult {
            first_version: f.version,
            last_version: l.version,
            last_position: l.position,
        }),
        _ => Err(Error::InvalidInput(
            "an append needs at least one event".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream() -> StreamId {
        StreamId::new("order-1").unwrap()
    }

    fn recorded(e: &NewEvent, version: u64) -> RecordedEvent {
        RecordedEvent {
            id: e.id,
            stream: stream(),
            version,
            position: version + 10,
            event_type: e.event_type.clone(),
            data: e.data.clone(),
            metadata: e.metadata.clone(),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_retry_of_a_stored_batch_returns_the_original_result() {
        let a = NewEvent::new("A", json!(1));
        let b = NewEvent::new("B", json!(2));
        let stored = [Some(recorded(&a, 3)), Some(recorded(&b, 4))];
        let state = StreamState {
            version: Some(9),
            deleted: false,
        };
        let plan = plan_append(
            &stream(),
            ExpectedVersion::Exact(2),
            state,
            &[a, b],
            &stored,
        );
        assert_eq!(
            plan.unwrap(),
            Plan::AlreadyStored(AppendResult {
                first_version: 3,
                last_version: 4,
                last_position: 14
            })
        );
    }

    #[test]
    fn same_id_with_different_data_is_a_violation() {
        let a = NewEvent::new("A", json!(1));
        let mut changed = a.clone();
        changed.data = json!(2);
        let stored = [Some(recorded(&a, 1))];
        let err = plan_append(
            &stream(),
            ExpectedVersion::Any,
            StreamState::default(),
            &[changed],
            &stored,
        )
        .unwrap_err();
        assert!(matches!(err, Error::IdempotencyViolation { .. }), "{err}");
    }

    #[test]
    fn expected_version_rules() {
        use ExpectedVersion::*;
        let cases = [
            (Any, None, true),
            (Any, Some(3), true),
            (NoStream, None, true),
            (NoStream, Some(1), false),
            (StreamExists, None, false),
            (StreamExists, Some(1), true),
            (Exact(0), None, true),
            (Exact(2), Some(2), true),
            (Exact(2), Some(3), false),
            (Exact(2), None, false),
        ];
        for (expected, actual, ok) in cases {
            assert_eq!(expected.admits(actual), ok, "{expected:?} vs {actual:?}");
        }
    }
}
