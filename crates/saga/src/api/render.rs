//! The JSON the API answers: an instance with its current step and timeline, and a
//! definition's outline. Definitions are not `Serialize` (they hold parsed names and
//! methods), so their outline is written here.

use serde_json::{Value, json};

use crate::TimelineEntry;
use crate::definition::{Action, SagaDefinition, StepPolicy};
use crate::state::{Phase, SagaState, SagaStatus};

/// An instance as listed: its state plus the step it is on.
pub(super) fn instance(state: &SagaState) -> Value {
    let mut v = serde_json::to_value(state).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("current_step".into(), json!(current_step(state)));
        if let Some(trace) = &state.trace {
            m.insert("trace_id".into(), json!(trace.parent.trace_id_hex()));
            m.insert("traceparent".into(), json!(trace.parent.to_string()));
        }
    }
    v
}

/// An instance with its whole timeline.
pub(super) fn detail(state: &SagaState, timeline: &[TimelineEntry]) -> Value {
    let mut v = instance(state);
    if let Value::Object(m) = &mut v {
        m.insert("timeline".into(), json!(timeline));
    }
    v
}

/// The step being run (or waited on) going forward, or being undone while compensating;
/// none once the instance has ended.
fn current_step(state: &SagaState) -> Option<&str> {
    let step = match state.status {
        SagaStatus::Running => state.steps.iter().find(|s| s.phase != Phase::Succeeded),
        SagaStatus::Compensating { .. } => state.steps.iter().rev().find(|s| {
            matches!(
                s.compensation,
                Phase::Running { .. } | Phase::Waiting { .. }
            )
        }),
        _ => None,
    };
    step.map(|s| s.name.as_str())
}

pub(super) fn definition(def: &SagaDefinition) -> Value {
    let steps: Vec<Value> = def
        .steps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "action": action(&s.action),
                "compensation": s.compensation.as_ref().map(action),
                "policy": policy(&s.policy),
                "compensation_policy": policy(&s.compensation_policy),
                "group": s.group,
            })
        })
        .collect();
    json!({
        "name": def.name,
        "version": def.version,
        "pivot": def.pivot,
        "deadline_ms": def.deadline.map(|d| d.as_millis() as u64),
        "steps": steps,
    })
}

fn action(a: &Action) -> Value {
    match a {
        Action::Http(h) => json!({
            "http": { "service": h.service.as_str(), "method": h.method.as_str(), "path": h.path }
        }),
        Action::Bus(b) => json!({
            "bus": { "topic": b.topic.as_str(), "reply_topic": b.reply_topic.as_str() }
        }),
        Action::Function(f) => json!({ "function": f }),
    }
}

fn policy(p: &StepPolicy) -> Value {
    json!({
        "timeout_ms": p.timeout.as_millis() as u64,
        "max_attempts": p.max_attempts,
    })
}
