//! The delay mover: JetStream 2.9 has no scheduled messages, so an event published with a
//! not-before time waits on `<prefix>.delayed.<topic>` and a durable consumer shared by every
//! process of the bus moves it to `<prefix>.ev.<topic>` when it is due. A message not yet due
//! is nacked with the remaining time as its delay (the server holds the timer, durably); a due
//! one is republished with `Nats-Msg-Id` = its sequence, then acked, so a mover that dies
//! between the two never moves an event twice.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, Message, consumer::PullConsumer, stream::Stream};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::codec::unix_ms;
use crate::publish::{confirm, send};
use crate::receive::header;
use crate::topology::{DELAY_MOVER, NOT_BEFORE, ensure_consumer, topic_of};
use crate::{Error, Options};

/// How long the mover pauses after a failed pull before it tries again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub(crate) async fn spawn(
    js: jetstream::Context,
    stream: Stream,
    o: Options,
) -> Result<JoinHandle<()>, Error> {
    let filter = format!("{}.delayed.>", o.prefix);
    let consumer = ensure_consumer(&stream, DELAY_MOVER, filter, o.ack_wait).await?;
    Ok(tokio::spawn(run(js, consumer, o)))
}

async fn run(js: jetstream::Context, consumer: PullConsumer, o: Options) {
    loop {
        if let Err(e) = pull_once(&js, &consumer, &o).await {
            tracing::warn!(error = %e, "delayed-publish mover: pull failed; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

async fn pull_once(js: &jetstream::Context, c: &PullConsumer, o: &Options) -> Result<(), String> {
    let mut batch = c
        .batch()
        .max_messages(100)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| e.to_string())?;
        move_one(js, o, &m).await?;
    }
    Ok(())
}

async fn move_one(js: &jetstream::Context, o: &Options, m: &Message) -> Result<(), String> {
    let due = header(m, NOT_BEFORE).and_then(|v| v.parse::<u64>().ok());
    let now = unix_ms(SystemTime::now());
    if let Some(due) = due.filter(|d| *d > now) {
        let wait = Duration::from_millis(due - now);
        return m
            .ack_with(AckKind::Nak(Some(wait)))
            .await
            .map_err(|e| e.to_string());
    }
    let Some(topic) = topic_of(o, &m.subject, "delayed") else {
        tracing::error!(subject = %m.subject, "delayed message outside the delayed space terminated");
        return m.ack_with(AckKind::Term).await.map_err(|e| e.to_string());
    };
    let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("delayed {seq}").as_str());
    let subject = format!("{}.ev.{topic}", o.prefix);
    let ack = send(js, subject, headers, m.payload.to_vec())
        .await
        .map_err(|e| e.to_string())?;
    confirm(ack).await.map_err(|e| e.to_string())?;
    m.double_ack().await.map_err(|e| e.to_string())
}
