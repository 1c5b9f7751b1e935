//! The rules a definition must follow, checked at load. Errors name the field.

use std::collections::HashSet;

use super::{Action, SagaDefinition, StepPolicy};
use crate::template;
use crate::{Error, Result};

/// Names become parts of stream ids and template paths: keep them plain.
fn check_name(v: &str, field: &str) -> Result<()> {
    let ok = (1..=63).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(Error::definition(
        field,
        format!(
            "{v:?} must be 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter"
        ),
    ))
}

pub(super) fn definition(def: &SagaDefinition) -> Result<()> {
    check_name(&def.name, "name")?;
    if def.version == 0 {
        return Err(Error::definition("version", "must be 1 or more"));
    }
    if def.steps.is_empty() {
        return Err(Error::definition("steps", "a saga needs at least one step"));
    }
    if def.deadline.is_some_and(|d| d.is_zero()) {
        return Err(Error::definition("deadline", "must be longer than zero"));
    }
    let mut seen = HashSet::new();
    for (i, step) in def.steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        check_name(&step.name, &format!("{at}.name"))?;
        if !seen.insert(step.name.as_str()) {
            let reason = format!("{:?} is used by an earlier step", step.name);
            return Err(Error::definition(format!("{at}.name"), reason));
        }
        policy(&step.policy, &at, "")?;
        policy(&step.compensation_policy, &at, "compensation_")?;
        group(def, i)?;
        // A step in a group may not use its siblings' results: they run at the same time.
        let before = def.group_of(i).start;
        action(def, &step.action, &format!("{at}.action"), before)?;
        if let Some(c) = &step.compensation {
            // A compensation may use its own step's result.
            action(def, c, &format!("{at}.compensation"), i + 1)?;
        }
    }
    if let Some(p) = &def.pivot
        && def.step_index(p).is_none()
    {
        return Err(Error::definition("pivot", format!("{p:?} is not a step")));
    }
    if let Some(p) = def.pivot_index()
        && def.group_of(p).len() > 1
    {
        let reason = "the pivot must be a step of its own, not one of a group";
        return Err(Error::definition("pivot", reason));
    }
    Ok(())
}

/// A group's steps stand next to each other: a group name is not used again further on.
fn group(def: &SagaDefinition, i: usize) -> Result<()> {
    let Some(g) = &def.steps[i].group else {
        return Ok(());
    };
    check_name(g, &format!("steps[{i}].group"))?;
    if def.group_of(i).start != i {
        return Ok(());
    }
    if def.steps[..i].iter().any(|s| s.group.as_ref() == Some(g)) {
        let reason = format!("{g:?} is used by steps that are not next to this one");
        return Err(Error::definition(format!("steps[{i}].group"), reason));
    }
    Ok(())
}

fn policy(p: &StepPolicy, at: &str, prefix: &str) -> Result<()> {
    if p.timeout.is_zero() {
        return Err(Error::definition(
            format!("{at}.{prefix}timeout"),
            "must be longer than zero",
        ));
    }
    if p.max_attempts == 0 {
        return Err(Error::definition(
            format!("{at}.{prefix}retry.max_attempts"),
            "must be 1 or more",
        ));
    }
    if p.base_delay > p.max_delay {
        return Err(Error::definition(
            format!("{at}.{prefix}retry.base_delay"),
            "must not exceed max_delay",
        ));
    }
    Ok(())
}

/// `before` is how many steps (from the first) the action's templates may refer to.
fn action(def: &SagaDefinition, a: &Action, at: &str, before: usize) -> Result<()> {
    match a {
        Action::Http(h) => {
            if !h.path.starts_with('/') {
                return Err(Error::definition(
                    format!("{at}.http.path"),
                    format!("{:?} must start with '/'", h.path),
                ));
            }
            templates(def, &[h.path.as_str()], &format!("{at}.http.path"), before)?;
            let body = h.body.as_ref().map(template::strings).unwrap_or_default();
            templates(def, &body, &format!("{at}.http.body"), before)
        }
        Action::Bus(b) => {
            let data = b.data.as_ref().map(template::strings).unwrap_or_default();
            templates(def, &data, &format!("{at}.bus.data"), before)
        }
        Action::Function(f) => check_name(f, &format!("{at}.function")),
    }
}

fn templates(def: &SagaDefinition, ts: &[&str], field: &str, before: usize) -> Result<()> {
    for t in ts {
        for var in template::vars(t).map_err(|r| Error::definition(field, r))? {
            if let ["steps", name, ..] = var.as_slice() {
                let ok = def.step_index(name).is_some_and(|i| i < before);
                if !ok {
                    let reason =
                        format!("{t:?} refers to step {name:?}, which is not an earlier step");
                    return Err(Error::definition(field, reason));
                }
            }
        }
    }
    Ok(())
}
