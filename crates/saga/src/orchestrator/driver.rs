//! The per-instance driver: decide, carry out the effect, record the outcome, repeat. It keeps
//! nothing that is not in the stream, so any replica (or this one after a restart) can take
//! over from the last recorded event.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

use super::Shared;
use super::stream::{self, Appended};
use crate::action::StepCall;
use crate::definition::{Action, SagaDefinition};
use crate::event::SagaEvent;
use crate::spans;
use crate::state::{self, Effect, SagaState};

pub(super) struct Driver {
    pub(super) shared: Arc<Shared>,
    pub(super) def: Arc<SagaDefinition>,
    pub(super) state: SagaState,
    /// Woken when someone else (a cancel) appended to the stream.
    pub(super) wake: Arc<Notify>,
    pub(super) tx: watch::Sender<SagaState>,
}

impl Driver {
    pub(super) async fn run(mut self) {
        let id = self.state.id.clone();
        loop {
            if self.lost_lease() {
                tracing::info!(saga = %id, owner = ?self.state.owner, "saga taken over elsewhere");
                break;
            }
            let effect = state::decide(&self.state, &self.def, self.shared.now());
            let step = match effect {
                Effect::Finish if self.leave() => return,
                Effect::Finish => self.refresh().await,
                effect => self.carry_out(effect).await,
            };
            if let Err(e) = step {
                // The instance stays as its stream says; recover() picks it up again.
                tracing::warn!(saga = %id, error = %e, "saga driver stopped");
                break;
            }
            self.tx.send_replace(self.state.clone());
        }
        self.tx.send_replace(self.state.clone());
        self.shared.running().remove(&id);
    }

    /// Leaves the running map unless a rerun was asked for meanwhile (checked and cleared
    /// under the same lock `drive` takes, so a retry is never left without a driver).
    fn leave(&self) -> bool {
        let mut running = self.shared.running();
        if let Some(r) = running.get_mut(&self.state.id)
            && r.rerun
        {
            r.rerun = false;
            return false;
        }
        running.remove(&self.state.id);
        self.tx.send_replace(self.state.clone());
        true
    }

    /// Whether another orchestrator has claimed the instance (this one's lease ran out).
    fn lost_lease(&self) -> bool {
        let Some(lease) = &self.shared.lease else {
            return false;
        };
        self.state.owner.as_ref().is_some_and(|o| *o != lease.owner)
    }

    async fn carry_out(&mut self, effect: Effect) -> crate::Result<()> {
        match effect {
            Effect::Record(event) => {
                self.record(event).await?;
            }
            Effect::RunStep {
                step,
                attempt,
                until,
            } => self.run_action(step, attempt, until, false).await?,
            Effect::RunCompensation {
                step,
                attempt,
                until,
            } => self.run_action(step, attempt, until, true).await?,
            Effect::RunGroup { compensation, runs } => {
                self.run_group(runs, compensation).await?;
            }
            Effect::Wait { until } => {
                tokio::select! {
                    () = tokio::time::sleep(self.until(until)) => {}
                    () = self.wake.notified() => self.refresh().await?,
                }
            }
            Effect::Finish => {}
        }
        Ok(())
    }

    /// Runs one attempt and records how it went. When it runs past `until`, nothing is
    /// recorded here: deciding again sees the timeout (or the saga deadline) and records that.
    async fn run_action(
        &mut self,
        step: usize,
        attempt: u32,
        until: DateTime<Utc>,
        compensation: bool,
    ) -> crate::Result<()> {
        let def = self.def.clone();
        let action = self.action(&def, step, compensation)?;
        let mut call = StepCall::new(&self.state, step, attempt, compensation);
        let span = spans::attempt(self.state.trace.as_ref(), &mut call);
        let run = self.shared.executor.run(&def, action, call);
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.until(until), run).instrument(span.clone()) => r,
            () = self.wake.notified() => return self.refresh().await,
        };
        spans::record(&span, outcome.as_ref().ok());
        let Ok(outcome) = outcome else {
            return Ok(());
        };
        let now = self.shared.now();
        let event = if compensation {
            state::compensation_outcome(&self.state, &def, step, attempt, outcome, now)
        } else {
            state::step_outcome(&self.state, &def, step, attempt, outcome, now)
        };
        if let Appended::Lost = self.record(event).await? {
            tracing::debug!(saga = %self.state.id, step, "another writer recorded first");
        }
        Ok(())
    }

    /// Runs the attempts of a group at the same time and records each outcome as it comes.
    /// It stops — dropping the attempts still running, which count as possibly done — once
    /// an outcome turns the saga (back, or to its end), another writer recorded first, or a
    /// cancel woke it; deciding again takes it from there. An attempt that runs past its
    /// `until` is left for deciding again to record as timed out.
    async fn run_group(
        &mut self,
        runs: Vec<(usize, u32, DateTime<Utc>)>,
        compensation: bool,
    ) -> crate::Result<()> {
        let status = self.state.status.clone();
        let mut attempts = tokio::task::JoinSet::new();
        for (step, attempt, until) in runs {
            let action = self.action(&self.def, step, compensation)?.clone();
            let mut call = StepCall::new(&self.state, step, attempt, compensation);
            let span = spans::attempt(self.state.trace.as_ref(), &mut call);
            let (shared, def, left) = (self.shared.clone(), self.def.clone(), self.until(until));
            attempts.spawn(async move {
                let run = shared.executor.run(&def, &action, call);
                let outcome = tokio::time::timeout(left, run)
                    .instrument(span.clone())
                    .await;
                spans::record(&span, outcome.as_ref().ok());
                (step, attempt, outcome)
            });
        }
        loop {
            let joined = tokio::select! {
                joined = attempts.join_next() => joined,
                () = self.wake.notified() => return self.refresh().await,
            };
            let Some(joined) = joined else {
                return Ok(());
            };
            let Ok((step, attempt, Ok(outcome))) = joined else {
                continue;
            };
            let now = self.shared.now();
            let def = self.def.clone();
            let event = if compensation {
                state::compensation_outcome(&self.state, &def, step, attempt, outcome, now)
            } else {
                state::step_outcome(&self.state, &def, step, attempt, outcome, now)
            };
            let lost = matches!(self.record(event).await?, Appended::Lost);
            if lost || self.state.status != status {
                return Ok(());
            }
        }
    }

    /// Appends `event` with the transitions that follow it at once (one write), and tells
    /// the observers when the instance ended.
    async fn record(&mut self, event: SagaEvent) -> crate::Result<Appended> {
        let events = state::with_follow_ups(&self.state, &self.def, event, self.shared.now());
        let ends = events.iter().any(SagaEvent::is_terminal);
        let store = self.shared.store.as_ref();
        let appended = stream::append_all(store, &mut self.state, events).await?;
        if let (Appended::Yes, true) = (&appended, ends) {
            for o in &self.shared.observers {
                o.ended(&self.state);
            }
        }
        Ok(appended)
    }

    fn action<'d>(
        &self,
        def: &'d SagaDefinition,
        step: usize,
        compensation: bool,
    ) -> crate::Result<&'d Action> {
        let step = &def.steps[step];
        if !compensation {
            return Ok(&step.action);
        }
        // decide() only asks to compensate steps that have a compensation.
        step.compensation
            .as_ref()
            .ok_or_else(|| crate::Error::InvalidState {
                id: self.state.id.clone(),
                reason: format!("step {} has no compensation", step.name),
            })
    }

    async fn refresh(&mut self) -> crate::Result<()> {
        self.state =
            stream::catch_up_durably(self.shared.store.as_ref(), self.state.clone()).await?;
        Ok(())
    }

    /// How long until `t`, rounded up so the clock has passed `t` when the timer fires.
    fn until(&self, t: DateTime<Utc>) -> Duration {
        let left = (t - self.shared.now()).to_std().unwrap_or_default();
        left + Duration::from_millis(1)
    }
}
