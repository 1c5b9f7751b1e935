//! What a saga is: a named, versioned list of steps, each an action with an optional
//! compensation and a timeout and retry policy. Definitions are plain data (serializable, no
//! closures): in-process functions are referred to by name and registered on the
//! orchestrator, so a declarative file and the Rust builder produce the same value.

mod builder;
mod file;
mod validate;

use std::time::Duration;

use flotilla_core::{ServiceName, TopicName};
use serde_json::Value;

pub use builder::{SagaBuilder, StepBuilder};

/// One version of a saga. Running instances keep the version they started with.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaDefinition {
    /// Lowercase letters, digits and `-`, starting with a letter (it is part of stream ids).
    pub name: String,
    /// 1 or more; an instance records the version it started on.
    pub version: u32,
    /// Steps in the order they run.
    pub steps: Vec<StepDefinition>,
    /// Whole-saga deadline from the start: when it passes before the pivot, the saga
    /// compensates.
    pub deadline: Option<Duration>,
    /// The step after whose success the saga only goes forward (no cancel, no deadline, no
    /// compensation).
    pub pivot: Option<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDefinition {
    /// Unique in the saga; templates refer to its result as `steps.<name>.result`.
    pub name: String,
    /// What the step does.
    pub action: Action,
    /// What undoes it, if anything.
    pub compensation: Option<Action>,
    /// Timeout and retries of the action.
    pub policy: StepPolicy,
    /// Timeout and retries of the compensation; when they run out the saga is stuck.
    pub compensation_policy: StepPolicy,
    /// Consecutive steps with the same group run at the same time, and are compensated at
    /// the same time; none may use another's result.
    pub group: Option<String>,
}

/// What a step or compensation does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An HTTP call to a service found through discovery.
    Http(HttpAction),
    /// A command published on the bus, answered by a reply event correlated by saga id and
    /// idempotency key (see [`crate::action`]'s bus module for the message contract).
    Bus(BusCommand),
    /// An in-process function registered on the orchestrator under this name.
    Function(String),
}

/// An HTTP call. `path` and the strings inside `body` are templates (see [`crate::template`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAction {
    /// The service to call.
    pub service: ServiceName,
    /// The method (`POST`).
    pub method: http::Method,
    /// The path and query, starting with `/`.
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

/// A bus command and the reply that ends it.
#[derive(Debug, Clone, PartialEq)]
pub struct BusCommand {
    /// Where the command is published.
    pub topic: TopicName,
    /// Where the participant publishes its reply, correlated by saga id.
    pub reply_topic: TopicName,
    /// The command's data (a template like an HTTP body).
    pub data: Option<Value>,
}

/// How long one attempt may take and how often to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPolicy {
    /// Budget of one attempt; an attempt that runs out counts as possibly done.
    pub timeout: Duration,
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Ceiling of the first backoff (full jitter, doubling per retry).
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
}

impl StepPolicy {
    /// The defaults of a forward step: 30s per attempt, 3 attempts, 100ms..5s backoff.
    pub const STEP: Self = Self {
        timeout: Duration::from_secs(30),
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    };

    /// The defaults of a compensation: it must finish, so it retries longer (10 attempts,
    /// 200ms..30s backoff) before the saga is declared stuck.
    pub const COMPENSATION: Self = Self {
        timeout: Duration::from_secs(30),
        max_attempts: 10,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(30),
    };
}

impl SagaDefinition {
    /// Starts a definition in Rust.
    pub fn builder(name: impl Into<String>, version: u32) -> SagaBuilder {
        SagaBuilder::new(name.into(), version)
    }

    /// Parses and validates a TOML definition.
    pub fn from_toml(text: &str) -> crate::Result<Self> {
        file::from_toml(text)
    }

    /// Parses and validates a JSON definition.
    pub fn from_json(text: &str) -> crate::Result<Self> {
        file::from_json(text)
    }

    /// Checks every rule; errors name the bad field.
    pub fn validate(&self) -> crate::Result<()> {
        validate::definition(self)
    }

    /// The index of the step named `name`.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// The steps that run together with step `i` (its group, or itself alone), as a range.
    pub fn group_of(&self, i: usize) -> std::ops::Range<usize> {
        let Some(g) = self.steps.get(i).and_then(|s| s.group.as_deref()) else {
            return i..i + 1;
        };
        let same = |j: &usize| self.steps[*j].group.as_deref() == Some(g);
        let start = (0..i).rev().take_while(same).last().unwrap_or(i);
        let end = (i..self.steps.len()).take_while(same).last().unwrap_or(i) + 1;
        start..end
    }

    /// The index of the pivot step.
    pub fn pivot_index(&self) -> Option<usize> {
        self.pivot.as_deref().and_then(|p| self.step_index(p))
    }

    /// Every action of the saga with its field path, compensations included.
    pub fn actions(&self) -> impl Iterator<Item = (String, &Action)> {
        self.steps.iter().enumerate().flat_map(|(i, s)| {
            let fwd = std::iter::once((format!("steps[{i}].action"), &s.action));
            let comp = s
                .compensation
                .iter()
                .map(move |c| (format!("steps[{i}].compensation"), c));
            fwd.chain(comp)
        })
    }
}
