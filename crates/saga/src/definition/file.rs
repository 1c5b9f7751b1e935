//! The declarative format (TOML or JSON). Every field is checked while converting, so errors
//! name the field as written (`steps[1].retry.base_delay`).

use flotilla_core::{ServiceName, TopicName};
use flotilla_resilience::policy::Dur;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, BusCommand, HttpAction, SagaDefinition, StepDefinition, StepPolicy};
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SagaFile {
    name: String,
    version: u32,
    #[serde(default)]
    deadline: Option<Dur>,
    #[serde(default)]
    pivot: Option<String>,
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: String,
    action: ActionFile,
    #[serde(default)]
    compensation: Option<ActionFile>,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default)]
    retry: Option<RetryFile>,
    #[serde(default)]
    compensation_timeout: Option<Dur>,
    #[serde(default)]
    compensation_retry: Option<RetryFile>,
    #[serde(default)]
    group: Option<String>,
}

/// The same keys as the resilience policy's `[retry]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    max_attempts: Option<u32>,
    base_delay: Option<Dur>,
    max_delay: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ActionFile {
    Http(HttpFile),
    Bus(BusFile),
    Function(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    service: String,
    method: String,
    path: String,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusFile {
    topic: String,
    reply_topic: String,
    #[serde(default)]
    data: Option<Value>,
}

pub(super) fn from_toml(text: &str) -> Result<SagaDefinition> {
    let file: SagaFile = toml::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
    convert(file)
}

pub(super) fn from_json(text: &str) -> Result<SagaDefinition> {
    let file: SagaFile = serde_json::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
    convert(file)
}

fn convert(file: SagaFile) -> Result<SagaDefinition> {
    let steps = file
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| step(s, &format!("steps[{i}]")))
        .collect::<Result<_>>()?;
    let def = SagaDefinition {
        name: file.name,
        version: file.version,
        steps,
        deadline: file.deadline.map(|d| dur(&d, "deadline")).transpose()?,
        pivot: file.pivot,
    };
    def.validate()?;
    Ok(def)
}

fn step(s: StepFile, at: &str) -> Result<StepDefinition> {
    Ok(StepDefinition {
        action: action(s.action, &format!("{at}.action"))?,
        compensation: s
            .compensation
            .map(|c| action(c, &format!("{at}.compensation")))
            .transpose()?,
        policy: policy(StepPolicy::STEP, s.timeout, s.retry, at, "")?,
        compensation_policy: policy(
            StepPolicy::COMPENSATION,
            s.compensation_timeout,
            s.compensation_retry,
            at,
            "compensation_",
        )?,
        name: s.name,
        group: s.group,
    })
}

fn policy(
    mut p: StepPolicy,
    timeout: Option<Dur>,
    retry: Option<RetryFile>,
    at: &str,
    prefix: &str,
) -> Result<StepPolicy> {
    if let Some(t) = timeout {
        p.timeout = dur(&t, &format!("{at}.{prefix}timeout"))?;
    }
    let r = retry.unwrap_or_default();
    let field = |k: &str| format!("{at}.{prefix}retry.{k}");
    p.max_attempts = r.max_attempts.unwrap_or(p.max_attempts);
    if let Some(d) = r.base_delay {
        p.base_delay = dur(&d, &field("base_delay"))?;
    }
    if let Some(d) = r.max_delay {
        p.max_delay = dur(&d, &field("max_delay"))?;
    }
    Ok(p)
}

fn dur(d: &Dur, field: &str) -> Result<std::time::Duration> {
    d.get().map_err(|reason| Error::definition(field, reason))
}

fn action(a: ActionFile, at: &str) -> Result<Action> {
    Ok(match a {
        ActionFile::Http(h) => Action::Http(HttpAction {
            service: ServiceName::new(&h.service)
                .map_err(|e| Error::definition(format!("{at}.http.service"), e.to_string()))?,
            method: h.method.parse().map_err(|_| {
                Error::definition(
                    format!("{at}.http.method"),
                    format!("{:?} is not an HTTP method", h.method),
                )
            })?,
            path: h.path,
            body: h.body,
        }),
        ActionFile::Bus(b) => Action::Bus(BusCommand {
            topic: topic(&b.topic, &format!("{at}.bus.topic"))?,
            reply_topic: topic(&b.reply_topic, &format!("{at}.bus.reply_topic"))?,
            data: b.data,
        }),
        ActionFile::Function(f) => Action::Function(f),
    })
}

fn topic(t: &str, field: &str) -> Result<TopicName> {
    TopicName::new(t).map_err(|e| Error::definition(field, e.to_string()))
}
