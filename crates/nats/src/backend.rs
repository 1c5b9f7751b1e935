//! [`NatsBackend`]: the bus contract on one JetStream stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
use async_nats::jetstream::{self, consumer::PullConsumer, stream::Stream};
use flotilla_bus::{Error as BusError, GroupName};
use tokio::task::JoinHandle;

use crate::codec::{consumer_for, replay_consumer_for};
use crate::lease::Leases;
use crate::topology::{ensure_consumer, ensure_stream, pattern_subject, replay_subject};
use crate::{Error, Options};

/// The bus on NATS JetStream; clones share one connection.
#[derive(Debug, Clone)]
pub struct NatsBackend {
    pub(crate) inner: Arc<Inner>,
}

/// A group's two durable consumers: its events and its replayed dead letters.
#[derive(Debug, Clone)]
pub(crate) struct GroupConsumers {
    pub(crate) main: PullConsumer,
    pub(crate) replay: PullConsumer,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) stream: Stream,
    pub(crate) opts: Options,
    pub(crate) groups: Mutex<HashMap<GroupName, GroupConsumers>>,
    pub(crate) leases: Leases,
    /// Receives so far (paces how often the replay consumer is pulled first).
    pub(crate) receives: std::sync::atomic::AtomicU64,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl NatsBackend {
    /// Connects, creates the stream if it is missing and starts the delayed-publish mover.
    pub async fn connect(opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        let client = async_nats::connect(&opts.url)
            .await
            .map_err(|e| Error::Connect {
                url: flotilla_core::redact::url(&opts.url),
                reason: flotilla_core::redact::text_about(&e.to_string(), &opts.url),
            })?;
        let js = jetstream::new(client.clone());
        let stream = ensure_stream(&js, &opts).await?;
        let mover = crate::mover::spawn(js.clone(), stream.clone(), opts.clone()).await?;
        let leases = Leases::default();
        let keeper = leases.spawn_keeper(client.clone(), opts.ack_wait);
        let inner = Inner {
            client,
            js,
            stream,
            opts,
            groups: Mutex::new(HashMap::new()),
            leases,
            receives: std::sync::atomic::AtomicU64::new(0),
            tasks: [mover, keeper],
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The options this backend runs with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Deletes the whole stream: every event, dead letter and consumer of this bus. For tests
    /// and for tearing an environment down.
    pub async fn destroy(&self) -> Result<(), Error> {
        self.inner
            .js
            .delete_stream(&self.inner.opts.prefix)
            .await
            .map_err(|e| Error::broker("delete stream", e))?;
        Ok(())
    }

    /// The group's consumers (`NotFound` if the group was never declared).
    pub(crate) async fn consumers(&self, group: &GroupName) -> Result<GroupConsumers, BusError> {
        if let Some(c) = self.cached(group) {
            return Ok(c);
        }
        let filter = self.declared_filter(group).await?;
        let c = self.open(group, filter).await?;
        self.cache(group, c.clone());
        Ok(c)
    }

    pub(crate) fn cached(&self, group: &GroupName) -> Option<GroupConsumers> {
        let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.get(group).cloned()
    }

    pub(crate) fn cache(&self, group: &GroupName, c: GroupConsumers) {
        let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.insert(group.clone(), c);
    }

    pub(crate) fn forget(&self, group: &GroupName) {
        let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.remove(group);
    }

    /// The filter subject of a declared group's consumer, or `NotFound`.
    pub(crate) async fn declared_filter(&self, group: &GroupName) -> Result<String, BusError> {
        let name = consumer_for(group);
        match self.inner.stream.consumer_info(&name).await {
            Ok(info) => Ok(info.config.filter_subject),
            Err(e) if consumer_missing(&e) => Err(BusError::NotFound {
                what: "group",
                id: group.to_string(),
            }),
            Err(e) => Err(BusError::Unavailable(format!("NATS consumer info: {e}"))),
        }
    }

    /// Creates or updates both consumers of a group.
    pub(crate) async fn open(
        &self,
        group: &GroupName,
        filter: String,
    ) -> Result<GroupConsumers, BusError> {
        let (stream, wait) = (&self.inner.stream, self.inner.opts.ack_wait);
        let main = ensure_consumer(stream, &consumer_for(group), filter, wait).await?;
        let rq = replay_subject(&self.inner.opts, group);
        let replay = ensure_consumer(stream, &replay_consumer_for(group), rq, wait).await?;
        Ok(GroupConsumers { main, replay })
    }

    pub(crate) fn filter_for(&self, pattern: &flotilla_core::TopicPattern) -> String {
        pattern_subject(&self.inner.opts, pattern)
    }
}

pub(crate) fn consumer_missing(e: &ConsumerInfoError) -> bool {
    match e.kind() {
        ConsumerInfoErrorKind::NotFound => true,
        ConsumerInfoErrorKind::JetStream(err) => err.error_code() == ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}
