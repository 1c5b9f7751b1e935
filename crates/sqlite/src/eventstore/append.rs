//! Appends as merged writes of the group-commit writer.
//!
//! The appends gathered into one batch run together (one savepoint, statements prepared once,
//! one clock read), each still planned on its own: it reads the stored ids and the stream's
//! state as the appends before it in the batch left them, so two appends to one stream in one
//! batch are ordered as if each had its own transaction. An append refused by its plan (wrong
//! expected version, deleted stream, idempotency violation) writes nothing and fails alone; a
//! storage error fails the batch's appends together, which are then run one by one so it
//! fails only the append it belongs to (see [`Merge`]).

use chrono::Utc;
use flotilla_core::StreamId;
use flotilla_eventstore::plan::{Plan, plan_append};
use flotilla_eventstore::{AppendResult, Error, ExpectedVersion, NewEvent};
use rusqlite::Connection;

use super::job::{JobError, failed, forget_corruption, refused};
use super::rows::{Encoded, Statements, db};
use crate::writer::Merge;

/// One append, its events already encoded.
pub(super) struct Append {
    pub(super) stream: StreamId,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<NewEvent>,
    pub(super) encoded: Vec<Encoded>,
}

impl Append {
    /// Encodes `events` for an append to `stream` (on the caller's thread, not the writer's).
    pub(super) fn new(
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Self, Error> {
        let encoded = events.iter().map(Encoded::new).collect::<Result<_, _>>()?;
        Ok(Self {
            stream,
            expected,
            events,
            encoded,
        })
    }

    /// Plans this append against what is stored and writes it if the plan says so. The outer
    /// error is a storage failure (the append may have written part of its rows); the inner
    /// one a refusal, which wrote nothing.
    fn run(&self, st: &mut Statements<'_>, now: i64) -> Result<Result<AppendResult, Error>, Error> {
        let stored = self
            .events
            .iter()
            .map(|e| st.by_id(e.id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        let state = st.stream_state(&self.stream).map_err(db)?;
        let plan = plan_append(&self.stream, self.expected, state, &self.events, &stored);
        Ok(match plan {
            Err(refused) => Err(refused),
            Ok(Plan::AlreadyStored(r)) => Ok(r),
            Ok(Plan::Write { first_version }) => {
                let last_position = st
                    .insert(
                        &self.stream,
                        first_version,
                        &self.events,
                        &self.encoded,
                        now,
                    )
                    .map_err(db)?;
                Ok(AppendResult {
                    first_version,
                    last_version: first_version + self.events.len() as u64 - 1,
                    last_position,
                })
            }
        })
    }
}

impl Merge for Append {
    type Output = AppendResult;
    type Error = JobError;

    fn run_all(
        c: &Connection,
        writes: &[Self],
    ) -> Result<Vec<Result<AppendResult, JobError>>, JobError> {
        forget_corruption();
        let mut st = Statements::prepare(c).map_err(|e| failed(db(e)))?;
        let now = Utc::now().timestamp_millis();
        writes
            .iter()
            .map(|w| match w.run(&mut st, now) {
                Ok(answer) => Ok(answer.map_err(refused)),
                Err(e) => Err(failed(e)),
            })
            .collect()
    }

    fn run_one(c: &Connection, w: &Self) -> Result<AppendResult, JobError> {
        forget_corruption();
        let mut st = Statements::prepare(c).map_err(|e| failed(db(e)))?;
        let now = Utc::now().timestamp_millis();
        match w.run(&mut st, now) {
            Ok(answer) => answer.map_err(failed),
            Err(e) => Err(failed(e)),
        }
    }
}
