//! One request through the layer: claim the key (or replay, or refuse), run the handler,
//! record the outcome.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use flotilla_core::StreamId;
use flotilla_eventstore::{Error as StoreError, ExpectedVersion, ReadStream, Version};
use tower::{Service, ServiceExt};

use super::Config;
use super::key::{bad_key, fingerprint, key_of, missing_key, stream_for};
use super::record::{
    COMPLETED, Completed, Entry, KeyState, RELEASED, Released, STARTED, Started, event,
    lease_until, now_ms,
};
use crate::Problem;

/// How often a request reads the key again after losing a claim race before it answers
/// "in progress".
const CLAIM_ATTEMPTS: usize = 5;

/// What a request does with the key as it finds it.
enum Decision {
    /// Claim the key by appending at this version.
    Claim(ExpectedVersion),
    Replay(Completed),
    InProgress {
        lease_until_ms: u64,
    },
    OtherRequest,
}

pub(super) async fn handle<S>(config: &Config, inner: S, req: Request) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    let key = match key_of(req.headers()) {
        Ok(Some(key)) => key,
        Ok(None) if config.required => return missing_key(),
        Ok(None) => return call(inner, req).await,
        Err(message) => return bad_key(message),
    };
    let stream = match stream_for(&config.scope, &key) {
        Ok(stream) => stream,
        Err(message) => return bad_key(message),
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return Problem::bad_request("the request body could not be read").into_response();
    };
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let print = fingerprint(parts.method.as_str(), path, &body);
    let claimed = match claim(config, &stream, &print).await {
        Ok(Ok(version)) => version,
        Ok(Err(answer)) => return answer,
        Err(e) => return store_problem(&e).into_response(),
    };
    let res = call(inner, Request::from_parts(parts, Body::from(body))).await;
    record(config, &stream, claimed, res).await
}

async fn call<S>(inner: S, req: Request) -> Response
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
{
    match inner.oneshot(req).await {
        Ok(res) => res.into_response(),
        Err(never) => match never {},
    }
}

/// Claims the key (`Ok(Ok(version of the claim))`) or answers without running the handler.
async fn claim(
    config: &Config,
    stream: &StreamId,
    print: &str,
) -> Result<Result<Version, Response>, StoreError> {
    let mut seen = None;
    for _ in 0..CLAIM_ATTEMPTS {
        let events = config.store.read_stream(stream, ReadStream::all()).await?;
        let entry = Entry::fold(&events).map_err(StoreError::storage)?;
        let expected = match decide(entry, print) {
            Decision::Claim(expected) => expected,
            Decision::Replay(stored) => return Ok(Err(stored.replay())),
            Decision::OtherRequest => return Ok(Err(other_request())),
            Decision::InProgress { lease_until_ms } => {
                return Ok(Err(in_progress(config, lease_until_ms)));
            }
        };
        let started = Started {
            fingerprint: print.to_owned(),
            lease_until_ms: lease_until(config.lease),
        };
        seen = Some(started.lease_until_ms);
        let append = config
            .store
            .append(stream, expected, vec![event(STARTED, &started)]);
        match append.await {
            Ok(appended) => return Ok(Ok(appended.last_version)),
            Err(StoreError::WrongExpectedVersion { .. }) => continue, // another request won
            Err(e) => return Err(e),
        }
    }
    Ok(Err(in_progress(config, seen.unwrap_or_else(now_ms))))
}

fn decide(entry: Entry, print: &str) -> Decision {
    if entry
        .fingerprint
        .as_deref()
        .is_some_and(|first| first != print)
    {
        return Decision::OtherRequest;
    }
    let at = match entry.version {
        None => ExpectedVersion::NoStream,
        Some(v) => ExpectedVersion::Exact(v),
    };
    match entry.state {
        KeyState::Free => Decision::Claim(at),
        KeyState::Done(stored) => Decision::Replay(stored),
        KeyState::Claimed { lease_until_ms } if lease_until_ms <= now_ms() => Decision::Claim(at),
        KeyState::Claimed { lease_until_ms } => Decision::InProgress { lease_until_ms },
    }
}

/// Stores a final answer for replays, or releases the key after a passing failure, then
/// answers.
async fn record(config: &Config, stream: &StreamId, claimed: Version, res: Response) -> Response {
    let (parts, body) = res.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, %stream, "the handler's answer could not be read");
            let released = event(RELEASED, &Released { status: 500 });
            let at = ExpectedVersion::Exact(claimed);
            if let Err(e) = config.store.append(stream, at, vec![released]).await {
                tracing::warn!(error = %e, %stream, "the key could not be released");
            }
            return Problem::internal().into_response();
        }
    };
    let outcome = match passing(parts.status) {
        true => event(
            RELEASED,
            &Released {
                status: parts.status.as_u16(),
            },
        ),
        false => event(COMPLETED, &Completed::capture(&parts, &body)),
    };
    let at = ExpectedVersion::Exact(claimed);
    if let Err(e) = config.store.append(stream, at, vec![outcome]).await {
        // Taken over after the lease ran out, or the store failed: the answer still goes out,
        // and the key stays as the store has it (a retry replays the taker's answer or waits
        // for the lease).
        tracing::warn!(error = %e, %stream, "the outcome under the key could not be recorded");
    }
    Response::from_parts(parts, Body::from(body))
}

/// A 5xx, 408 or 429: an answer a retry may change (callers retry exactly these), so it is
/// not kept for replays.
fn passing(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

fn other_request() -> Response {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
        .detail("this Idempotency-Key was used for a different request (method, path or body)")
        .field(
            "Idempotency-Key",
            "was already used for a different request",
        )
        .into_response()
}

fn in_progress(config: &Config, lease_until_ms: u64) -> Response {
    let left_s = lease_until_ms.saturating_sub(now_ms()).div_ceil(1000);
    let retry_after = left_s.clamp(1, 5);
    let mut res = Problem::new(config.in_progress)
        .detail("a request with this Idempotency-Key is still in progress; retry later")
        .into_response();
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

fn store_problem(e: &StoreError) -> Problem {
    tracing::error!(error = %e, "the idempotency record could not be read or written");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail("the idempotency record is unavailable; retry with the same key")
}
