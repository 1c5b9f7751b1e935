//! Folding events into state. An event naming a step the instance does not have, or coming
//! before `Started`, means the stream is corrupt; the caller reports it with the version.

use super::{Phase, SagaState, SagaStatus, StepState};
use crate::event::SagaEvent;

impl SagaState {
    /// The state right after `Started`; any other event is refused.
    pub fn start(id: &str, event: &SagaEvent) -> Result<Self, String> {
        let SagaEvent::Started {
            definition,
            version,
            steps,
            data,
            at,
            deadline,
        } = event
        else {
            return Err(format!(
                "the first event is {}, not SagaStarted",
                event.kind()
            ));
        };
        Ok(Self {
            id: id.to_owned(),
            definition: definition.clone(),
            version: *version,
            data: data.clone(),
            started_at: *at,
            deadline: *deadline,
            status: SagaStatus::Running,
            abort_reason: None,
            steps: steps.iter().cloned().map(StepState::new).collect(),
            finished_at: None,
            owner: None,
            stream_version: 1,
            trace: None,
        })
    }

    /// The state after `event` (the stream version is the caller's to set).
    pub fn apply(mut self, event: &SagaEvent) -> Result<Self, String> {
        match event {
            SagaEvent::Started { .. } => return Err("SagaStarted appears twice".into()),
            SagaEvent::Cancelled { reason, .. } => self.turn_back(*reason),
            SagaEvent::Completed { at } => self.finish(SagaStatus::Completed, *at),
            SagaEvent::Compensated { at } => self.finish(SagaStatus::Compensated, *at),
            SagaEvent::Stuck { step, error, at } => {
                let status = SagaStatus::Stuck {
                    step: step.clone(),
                    error: error.clone(),
                };
                self.finish(status, *at);
            }
            SagaEvent::Retried { at } => self.retry(*at)?,
            SagaEvent::Claimed { owner, .. } => self.owner = Some(owner.clone()),
            step_event => self.apply_step(step_event)?,
        }
        Ok(self)
    }

    fn apply_step(&mut self, event: &SagaEvent) -> Result<(), String> {
        match event {
            SagaEvent::StepStarted {
                step,
                attempt,
                timeout_at,
            } => {
                let s = self.step_mut(step)?;
                s.attempts = *attempt;
                s.phase = Phase::Running {
                    attempt: *attempt,
                    timeout_at: *timeout_at,
                };
            }
            SagaEvent::StepSucceeded { step, result, .. } => {
                let s = self.step_mut(step)?;
                s.phase = Phase::Succeeded;
                s.result = Some(result.clone());
            }
            SagaEvent::StepFailed {
                step,
                error,
                possibly_done,
                retry_at,
                ..
            } => {
                let s = self.step_mut(step)?;
                s.possibly_done |= *possibly_done;
                s.error = Some(error.clone());
                s.phase = retry_at.map_or(Phase::Failed, |retry_at| Phase::Waiting { retry_at });
            }
            other => self.apply_compensation(other)?,
        }
        Ok(())
    }

    fn apply_compensation(&mut self, event: &SagaEvent) -> Result<(), String> {
        match event {
            SagaEvent::CompensationStarted {
                step,
                attempt,
                timeout_at,
            } => {
                let s = self.step_mut(step)?;
                s.compensation_attempts = *attempt;
                s.compensation = Phase::Running {
                    attempt: *attempt,
                    timeout_at: *timeout_at,
                };
            }
            SagaEvent::CompensationSucceeded { step, .. } => {
                self.step_mut(step)?.compensation = Phase::Succeeded;
            }
            SagaEvent::CompensationFailed {
                step,
                error,
                retry_at,
                ..
            } => {
                let s = self.step_mut(step)?;
                s.compensation_error = Some(error.clone());
                s.compensation =
                    retry_at.map_or(Phase::Failed, |retry_at| Phase::Waiting { retry_at });
            }
            other => return Err(format!("{} is not a step event", other.kind())),
        }
        Ok(())
    }

    /// Stops going forward. An attempt in flight may have taken effect, so it is marked
    /// possibly done and will be compensated; a pending retry is dropped.
    fn turn_back(&mut self, reason: crate::event::AbortReason) {
        self.status = SagaStatus::Compensating { reason };
        self.abort_reason = Some(reason);
        for s in &mut self.steps {
            match s.phase {
                Phase::Running { .. } => {
                    s.possibly_done = true;
                    s.phase = Phase::Failed;
                }
                Phase::Waiting { .. } => s.phase = Phase::Failed,
                _ => {}
            }
        }
    }

    /// An operator retry: whatever ran out of attempts waits for a new attempt now, with a
    /// fresh budget; the attempt numbers go on, so every attempt stays distinct in the stream.
    fn retry(&mut self, at: chrono::DateTime<chrono::Utc>) -> Result<(), String> {
        if !matches!(self.status, SagaStatus::Stuck { .. }) {
            return Err("SagaRetried on an instance that is not stuck".into());
        }
        self.finished_at = None;
        let waiting = Phase::Waiting { retry_at: at };
        match self.abort_reason {
            Some(reason) => {
                self.status = SagaStatus::Compensating { reason };
                for s in self
                    .steps
                    .iter_mut()
                    .filter(|s| s.compensation == Phase::Failed)
                {
                    s.compensation = waiting;
                    s.compensation_retry_base = s.compensation_attempts;
                }
            }
            None => {
                self.status = SagaStatus::Running;
                for s in self.steps.iter_mut().filter(|s| s.phase == Phase::Failed) {
                    s.phase = waiting;
                    s.retry_base = s.attempts;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, status: SagaStatus, at: chrono::DateTime<chrono::Utc>) {
        self.status = status;
        self.finished_at = Some(at);
    }

    fn step_mut(&mut self, name: &str) -> Result<&mut StepState, String> {
        self.steps
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("event names step {name:?}, which the saga does not have"))
    }
}
