//! The platform's event store: [`PlatformEventStore`], an [`EventStore`] over the control
//! plane's `/api/v1/streams`, so a service in its own process keeps aggregates, repositories
//! and hosted projections against `flotilla up` as it would against a linked engine.
//!
//! Every operation is one HTTP call (reads of more than a page are several); the head is kept
//! live by one SSE connection ([`head`]). Nothing is retried here: a transport failure is
//! [`Error::Storage`] with `retryable: true`, meaning "unknown outcome", and the contract's
//! idempotent appends make the caller's retry with the same event ids safe.

mod head;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::StreamId;
use flotilla_eventstore::model::{validate_batch, validate_limit};
use flotilla_eventstore::store::validate_subscriber;
use flotilla_eventstore::{
    AppendResult, Direction, Error, EventStore, ExpectedVersion, NewEvent, Position, ReadAll,
    ReadStream, RecordedEvent, Result, Snapshot, StreamInfo, Version,
};
use http::{HeaderName, HeaderValue, Method};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ControlPlane;
use crate::http::{Answer, Call};
use wire::{Context, PAGE, error};

/// An [`EventStore`] served by a running control plane. Cheap to clone; the head follower
/// stops when the last clone is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use flotilla_platform::{ConnectOptions, ControlPlane};
/// use flotilla_platform::eventstore::PlatformEventStore;
///
/// let plane = ControlPlane::new(ConnectOptions::new("http://127.0.0.1:4400").token("secret"))?;
/// let store = PlatformEventStore::connect(plane).await?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PlatformEventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    plane: ControlPlane,
    head: watch::Receiver<Position>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PlatformEventStore {
    /// Starts following the control plane's head and answers at once: a control plane that
    /// is down now is reached when it comes up (calls fail with a retryable
    /// [`Error::Storage`] until then, and `head()` starts moving). Fails only outside a tokio
    /// runtime, which the head follower needs.
    pub async fn connect(plane: ControlPlane) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::Storage {
            message: format!("the platform event store needs a tokio runtime: {e}"),
            retryable: false,
        })?;
        let (tx, head) = watch::channel(0);
        let stop = CancellationToken::new();
        runtime.spawn(head::follow(plane.clone(), tx, stop.clone()));
        Ok(Self {
            inner: Arc::new(Inner { plane, head, stop }),
        })
    }

    async fn call(&self, call: Call<'_>, cx: Context<'_>) -> Result<Answer> {
        self.inner.plane.call(call).await.map_err(|e| error(e, cx))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str, cx: Context<'_>) -> Result<T> {
        decode(&self.call(Call::get(path), cx).await?)
    }

    /// One page of a stream read; `None` as the next start when it was the last page.
    async fn stream_page(
        &self,
        stream: &StreamId,
        from: Version,
        limit: usize,
        direction: Direction,
    ) -> Result<wire::StreamPage> {
        let direction = match direction {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        };
        let query = format!("?from={from}&limit={limit}&direction={direction}");
        let path = wire::stream_path(stream, &query);
        self.get(&path, Context::stream(stream)).await
    }
}

fn decode<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T> {
    answer.decode().map_err(|e| Error::Storage {
        message: e.to_string(),
        retryable: false,
    })
}

#[async_trait]
impl EventStore for PlatformEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate_batch(&events)?;
        let body = wire::AppendBody {
            expected_version: wire::expected_text(expected),
            events: &events,
        };
        let path = wire::stream_path(stream, "");
        let call = Call::new(Method::POST, &path).json(&body);
        decode(
            &self
                .call(call, Context::expecting(stream, expected))
                .await?,
        )
    }

    async fn read_stream(&self, stream: &StreamId, read: ReadStream) -> Result<Vec<RecordedEvent>> {
        validate_limit(read.limit)?;
        let mut events = Vec::new();
        let mut from = read.from;
        loop {
            let want = (read.limit - events.len()).min(PAGE);
            let page = self.stream_page(stream, from, want, read.direction).await?;
            events.extend(page.events);
            match page.next {
                Some(next) if events.len() < read.limit && next > 0 => from = next,
                _ => return Ok(events),
            }
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<Version>> {
        let path = wire::stream_path(stream, "/version");
        let answer: wire::VersionAnswer = self.get(&path, Context::stream(stream)).await?;
        Ok(answer.version)
    }

    async fn read_all(&self, read: ReadAll) -> Result<Vec<RecordedEvent>> {
        validate_limit(read.limit)?;
        let filter = wire::filter_query(&read.filter);
        let mut events: Vec<RecordedEvent> = Vec::new();
        let mut after = read.after;
        loop {
            let want = (read.limit - events.len()).min(PAGE);
            let path = format!("/api/v1/streams/$all?after={after}&limit={want}{filter}");
            let page: wire::AllPage = self.get(&path, Context::default()).await?;
            let full = page.events.len() >= page.limit;
            events.extend(page.events);
            match events.last() {
                Some(last) if full && events.len() < read.limit => after = last.position,
                _ => return Ok(events),
            }
        }
    }

    async fn delete_stream(&self, stream: &StreamId, expected: ExpectedVersion) -> Result<()> {
        let path = wire::stream_path(stream, "");
        let value = HeaderValue::from_str(&wire::expected_text(expected))
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let call = Call::new(Method::DELETE, &path)
            .header(HeaderName::from_static("expected-version"), value);
        self.call(call, Context::expecting(stream, expected))
            .await?;
        Ok(())
    }

    async fn truncate_stream(&self, stream: &StreamId, before: Version) -> Result<u64> {
        let path = wire::stream_path(stream, "/truncate");
        let call = Call::new(Method::POST, &path).json(&json!({ "before": before }));
        let answer: wire::TruncateAnswer =
            decode(&self.call(call, Context::stream(stream)).await?)?;
        Ok(answer.removed)
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let path = wire::stream_path(&snapshot.stream, "/snapshot");
        let body = json!({ "version": snapshot.version, "state": snapshot.state });
        let call = Call::new(Method::PUT, &path).json(&body);
        self.call(call, Context::stream(&snapshot.stream)).await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let path = wire::stream_path(stream, "/snapshot");
        let answer: wire::SnapshotAnswer = self.get(&path, Context::stream(stream)).await?;
        Ok(answer.snapshot)
    }

    async fn list_streams(
        &self,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>> {
        validate_limit(limit)?;
        let mut streams: Vec<StreamInfo> = Vec::new();
        let mut after = after.cloned();
        loop {
            let want = (limit - streams.len()).min(PAGE);
            let from = after
                .as_ref()
                .map(|s| format!("&after={}", crate::http::segment(s.as_str())));
            let path = format!("/api/v1/streams?limit={want}{}", from.unwrap_or_default());
            let page: wire::StreamsPage = self.get(&path, Context::default()).await?;
            streams.extend(page.streams);
            match page.next_after {
                Some(next) if streams.len() < limit => after = Some(next),
                _ => return Ok(streams),
            }
        }
    }

    async fn list_checkpoints(&self) -> Result<Vec<(String, Position)>> {
        let path = "/api/v1/streams/$subscriptions";
        let answer: wire::SubscribersAnswer = self.get(path, Context::default()).await?;
        let list = answer.subscriptions.into_iter();
        Ok(list.map(|s| (s.name, s.position)).collect())
    }

    async fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Position>> {
        validate_subscriber(subscriber)?;
        let path = wire::checkpoint_path(subscriber);
        let answer: wire::CheckpointAnswer = self.get(&path, Context::default()).await?;
        Ok(answer.position)
    }

    async fn save_checkpoint(&self, subscriber: &str, position: Position) -> Result<()> {
        validate_subscriber(subscriber)?;
        let path = wire::checkpoint_path(subscriber);
        let call = Call::new(Method::PUT, &path).json(&json!({ "position": position }));
        self.call(call, Context::default()).await?;
        Ok(())
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.inner.head.clone()
    }
}
