//! Bus-command steps: publish the command, wait for the participant's reply.
//!
//! The command goes to the step's topic with the saga id as correlation id and the step's
//! idempotency key in the `idempotencykey` extension (participants dedupe on it); its event
//! id is the key plus the attempt, so a retry is a new message and is not swallowed by the
//! bus's publisher dedupe. The participant replies on the step's reply topic, copying
//! `idempotencykey`; a reply with extension `outcome = "failed"` is a failure (its data's
//! `error` says why; `retryable = true` allows another attempt), any other is a success whose
//! data is the step's result.
//!
//! Replies are matched to the attempt waiting in this orchestrator. Each orchestrator reads
//! replies through its own consumer group, so every replica sees every reply; a reply that
//! finds no one waiting (its orchestrator restarted) is dropped, the attempt times out, and
//! the retry's command gets a fresh reply from the deduping participant.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use flotilla_bus::{Bus, HandlerError, Received, Subscription};
use flotilla_core::event::ExtensionValue;
use flotilla_core::{CloudEvent, TopicName};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{StepCall, StepError};
use crate::definition::{BusCommand, SagaDefinition};
use crate::template;

/// The extension that carries a command's idempotency key, on the command and its reply.
pub const EXT_IDEMPOTENCY_KEY: &str = "idempotencykey";
/// The reply extension that marks a failure (`failed`).
pub const EXT_OUTCOME: &str = "outcome";

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, StepError>>>>>;

pub(crate) struct BusRunner {
    bus: Bus,
    group: String,
    waiters: Waiters,
    listening: tokio::sync::Mutex<HashSet<TopicName>>,
    subscriptions: Mutex<Vec<Subscription>>,
    shutdown: CancellationToken,
}

impl BusRunner {
    pub(crate) fn new(bus: Bus) -> Self {
        Self {
            bus,
            group: format!("saga-orchestrator-{}", uuid::Uuid::now_v7()),
            waiters: Arc::default(),
            listening: tokio::sync::Mutex::default(),
            subscriptions: Mutex::default(),
            shutdown: CancellationToken::new(),
        }
    }

    pub(crate) async fn run(
        &self,
        def: &SagaDefinition,
        cmd: &BusCommand,
        call: StepCall,
    ) -> Result<Value, StepError> {
        // Listen before publishing, so the reply cannot come first.
        self.listen(&cmd.reply_topic).await?;
        let names: Vec<String> = def.steps.iter().map(|s| s.name.clone()).collect();
        let ctx = call.template_context(&names);
        let data = match &cmd.data {
            Some(d) => template::render_value(d, &ctx).map_err(StepError::permanent)?,
            None => Value::Null,
        };
        let (tx, rx) = oneshot::channel();
        let _waiting = Waiting::register(&self.waiters, &call.idempotency_key, tx);
        let mut event = CloudEvent::new(format!("/sagas/{}", call.saga), cmd.topic.as_str())
            .with_json(data)
            .with_correlation_id(call.saga_id.clone());
        event.id = format!("{}:{}", call.idempotency_key, call.attempt);
        if let Some(trace) = &call.trace {
            // The bus's publish span and the participant's consumer span join the attempt's.
            event.set_trace_context(trace);
        }
        let key = ExtensionValue::String(call.idempotency_key.clone());
        event
            .set_extension(EXT_IDEMPOTENCY_KEY, key)
            .map_err(|e| StepError::permanent(format!("cannot build the command: {e}")))?;
        self.bus
            .publish_to(cmd.topic.clone(), event)
            .await
            .map_err(|e| StepError::retryable(format!("publishing to {}: {e}", cmd.topic)))?;
        rx.await
            .unwrap_or_else(|_| Err(StepError::retryable("the reply listener stopped")))
    }

    async fn listen(&self, topic: &TopicName) -> Result<(), StepError> {
        let mut listening = self.listening.lock().await;
        if listening.contains(topic) {
            return Ok(());
        }
        let waiters = self.waiters.clone();
        let sub = self
            .bus
            .subscribe(topic.as_str())
            .group(&self.group)
            .shutdown_on(&self.shutdown)
            .handler(move |r| {
                let waiters = waiters.clone();
                async move { deliver(&waiters, &r) }
            })
            .await
            .map_err(|e| StepError::retryable(format!("subscribing to {topic}: {e}")))?;
        lock(&self.subscriptions).push(sub);
        listening.insert(topic.clone());
        Ok(())
    }
}

impl Drop for BusRunner {
    fn drop(&mut self) {
        // Subscription workers run until told to stop.
        self.shutdown.cancel();
    }
}

/// Hands a reply to the attempt waiting for it; one nobody waits for is acknowledged and
/// dropped (see the module comment).
fn deliver(waiters: &Waiters, r: &Received) -> Result<(), HandlerError> {
    let Some(key) = r.event.extension_str(EXT_IDEMPOTENCY_KEY) else {
        return Err(HandlerError::reject(
            "a saga reply needs the idempotencykey extension",
        ));
    };
    if let Some(tx) = lock(waiters).remove(key) {
        let _ = tx.send(outcome(&r.event));
    }
    Ok(())
}

fn outcome(reply: &CloudEvent) -> Result<Value, StepError> {
    let data = reply.json_data().cloned().unwrap_or(Value::Null);
    if reply.extension_str(EXT_OUTCOME) != Some("failed") {
        return Ok(data);
    }
    let message = data
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the participant replied failed")
        .to_owned();
    let retryable = data.get("retryable").and_then(Value::as_bool) == Some(true);
    Err(StepError {
        message,
        retryable,
        timed_out: false,
    })
}

/// A registered waiter, removed when the attempt ends however it ends (timeout, cancel).
struct Waiting<'a> {
    waiters: &'a Waiters,
    key: String,
}

impl<'a> Waiting<'a> {
    fn register(
        waiters: &'a Waiters,
        key: &str,
        tx: oneshot::Sender<Result<Value, StepError>>,
    ) -> Self {
        lock(waiters).insert(key.to_owned(), tx);
        Self {
            waiters,
            key: key.to_owned(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(self.waiters).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
