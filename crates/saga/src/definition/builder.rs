//! Defining a saga in Rust. The builder produces the same [`SagaDefinition`] a declarative
//! file does and validates it the same way.

use std::time::Duration;

use flotilla_core::ServiceName;
use serde_json::Value;

use super::{Action, HttpAction, SagaDefinition, StepDefinition, StepPolicy};

impl Action {
    /// An in-process function registered on the orchestrator as `name`.
    pub fn function(name: impl Into<String>) -> Self {
        Self::Function(name.into())
    }

    /// An HTTP call to `service`; `path` and `body` are templates.
    pub fn http(
        service: ServiceName,
        method: http::Method,
        path: impl Into<String>,
        body: Option<Value>,
    ) -> Self {
        Self::Http(HttpAction {
            service,
            method,
            path: path.into(),
            body,
        })
    }
}

/// Builds a [`SagaDefinition`]; see [`SagaDefinition::builder`].
#[derive(Debug, Clone)]
pub struct SagaBuilder {
    def: SagaDefinition,
}

impl SagaBuilder {
    pub(super) fn new(name: String, version: u32) -> Self {
        Self {
            def: SagaDefinition {
                name,
                version,
                steps: Vec::new(),
                deadline: None,
                pivot: None,
            },
        }
    }

    /// Appends a step.
    pub fn step(mut self, step: StepBuilder) -> Self {
        self.def.steps.push(step.step);
        self
    }

    /// Sets the whole-saga deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.def.deadline = Some(deadline);
        self
    }

    /// Names the pivot step.
    pub fn pivot(mut self, step: impl Into<String>) -> Self {
        self.def.pivot = Some(step.into());
        self
    }

    /// Validates and returns the definition.
    pub fn build(self) -> crate::Result<SagaDefinition> {
        self.def.validate()?;
        Ok(self.def)
    }
}

/// Builds one step.
#[derive(Debug, Clone)]
pub struct StepBuilder {
    step: StepDefinition,
}

impl StepBuilder {
    /// A step named `name` doing `action`, with the default policies.
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Self {
            step: StepDefinition {
                name: name.into(),
                action,
                compensation: None,
                policy: StepPolicy::STEP,
                compensation_policy: StepPolicy::COMPENSATION,
                group: None,
            },
        }
    }

    /// What undoes the step.
    pub fn compensate(mut self, action: Action) -> Self {
        self.step.compensation = Some(action);
        self
    }

    /// Timeout and retries of the action.
    pub fn policy(mut self, policy: StepPolicy) -> Self {
        self.step.policy = policy;
        self
    }

    /// Runs the step at the same time as the steps next to it with the same `group` (and
    /// compensates them together).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.step.group = Some(group.into());
        self
    }

    /// Timeout and retries of the compensation.
    pub fn compensation_policy(mut self, policy: StepPolicy) -> Self {
        self.step.compensation_policy = policy;
        self
    }
}
