//! A failed call to the control plane as the bus contract's [`Error`]: the classification
//! (retry or not, lease lost, not found) comes from the status and the problem type, never
//! from message text.

use flotilla_bus::Error;

use crate::CallError;

/// The problem type the bus API answers for a settle whose lease ended.
const LEASE_LOST: &str = "urn:flotilla:problem:lease-lost";

/// What a 404 of this call means: the kind of thing and the id asked for.
pub(super) type Lookup<'a> = (&'static str, &'a str);

/// Maps a failed call. `lookup` names what a 404 did not find.
pub(super) fn from_call(e: CallError, lookup: Lookup<'_>) -> Error {
    if e.is_transient() {
        return Error::Unavailable(e.to_string());
    }
    let (status, problem) = match &e {
        CallError::Status {
            status, problem, ..
        } => (*status, problem),
        // Unauthorized names the token and is not worth retrying; a bad answer is a bug.
        _ => return Error::Backend(e.to_string()),
    };
    let detail = e.detail();
    match status {
        400 | 413 | 415 => Error::InvalidInput(detail),
        404 => Error::NotFound {
            what: lookup.0,
            id: lookup.1.to_owned(),
        },
        409 if problem.kind.as_deref() == Some(LEASE_LOST) => Error::LeaseLost,
        409 => Error::Conflict(detail),
        _ => Error::Backend(e.to_string()),
    }
}

/// The same failure for each caller of a failed gathered request (errors are not `Clone`).
pub(super) fn copy(e: &Error, message: &str) -> Error {
    match e {
        Error::Unavailable(_) => Error::Unavailable(message.to_owned()),
        Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::LeaseLost => Error::LeaseLost,
        Error::TooLarge { size, limit } => Error::TooLarge {
            size: *size,
            limit: *limit,
        },
        _ => Error::Backend(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;

    fn status(status: u16, kind: Option<&str>) -> CallError {
        CallError::Status {
            status,
            problem: Problem {
                kind: kind.map(str::to_owned),
                title: None,
                detail: Some("it says why".into()),
                ..Problem::default()
            },
            retry_after: None,
        }
    }

    #[test]
    fn statuses_and_problem_types_map_onto_the_contract() {
        let g = ("group", "g");
        assert!(matches!(
            from_call(status(409, Some(LEASE_LOST)), g),
            Error::LeaseLost
        ));
        assert!(matches!(
            from_call(status(409, None), g),
            Error::Conflict(_)
        ));
        assert!(matches!(
            from_call(status(404, None), g),
            Error::NotFound { what: "group", .. }
        ));
        assert!(matches!(
            from_call(status(503, None), g),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            from_call(status(400, None), g),
            Error::InvalidInput(_)
        ));
    }

    #[test]
    fn a_refused_token_is_not_retryable_and_says_so() {
        let e = CallError::Unauthorized {
            url: "http://cp".into(),
            status: 401,
        };
        let mapped = from_call(e, ("group", "g"));
        assert!(matches!(&mapped, Error::Backend(m) if m.contains("platform.token")));
        use flotilla_core::error::Classify;
        assert!(!mapped.class().retryable);
    }
}
