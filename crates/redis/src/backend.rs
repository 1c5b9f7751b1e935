//! [`RedisBackend`]: connection handling, the delay mover, and the blocking wait of `receive`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{Error as BusError, GroupName};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::bus_error;
use crate::scripts::MOVER;
use crate::{Error, Options};

/// How many delayed events the mover routes per script call.
const MOVE_BATCH: usize = 500;

/// The bus on Redis Streams; clones share one connection.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: redis::Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) opts: Options,
    /// Connections for blocking reads, which would stall every other command on the shared
    /// multiplexed connection.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    mover: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.mover.abort();
    }
}

impl RedisBackend {
    /// Connects and starts the delayed-publish mover.
    pub async fn connect(opts: Options) -> Result<Self, Error> {
        opts.validate()?;
        let connect_err = |e: redis::RedisError| Error::Connect {
            url: flotilla_core::redact::url(&opts.url),
            reason: flotilla_core::redact::text_about(&e.to_string(), &opts.url),
        };
        let client = redis::Client::open(opts.url.as_str()).map_err(connect_err)?;
        let conn = ConnectionManager::new(client.clone())
            .await
            .map_err(connect_err)?;
        let mover = tokio::spawn(run_mover(conn.clone(), opts.clone()));
        let inner = Inner {
            client,
            conn,
            opts,
            blocking: Mutex::new(Vec::new()),
            mover,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The options this backend runs with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// A command connection (cheap clone of the shared one).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }

    pub(crate) fn stream_key(&self, group: &GroupName) -> String {
        format!("{}:s:{group}", self.prefix())
    }

    /// Blocks until the group's stream has an entry after `last` or `block` passed.
    pub(crate) async fn wait_for_entry(
        &self,
        group: &GroupName,
        last: &str,
        block: Duration,
    ) -> Result<(), BusError> {
        let mut conn = self.blocking_conn().await?;
        // The client's default response timeout is shorter than a long block.
        conn.set_response_timeout(block + Duration::from_secs(2));
        let ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let r: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(self.stream_key(group))
            .arg(last)
            .query_async(&mut conn)
            .await;
        r.map_err(bus_error)?;
        let mut pool = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pool.push(conn);
        Ok(())
    }

    async fn blocking_conn(&self) -> Result<MultiplexedConnection, BusError> {
        let pooled = {
            let mut pool = self
                .inner
                .blocking
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        match pooled {
            Some(c) => Ok(c),
            None => self
                .inner
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(bus_error),
        }
    }
}

/// Routes due delayed publishes, sleeping until the next is due (at most `mover_tick`).
async fn run_mover(mut conn: ConnectionManager, o: Options) {
    loop {
        let r: redis::RedisResult<i64> = MOVER
            .arg(&o.prefix)
            .arg(MOVE_BATCH)
            .invoke_async(&mut conn)
            .await;
        let pause = match r {
            Ok(ms) if ms >= 0 => Duration::from_millis(ms.unsigned_abs()).min(o.mover_tick),
            Ok(_) => o.mover_tick,
            Err(e) => {
                tracing::warn!(error = %e, "Redis delayed-publish mover failed; retrying");
                o.mover_tick
            }
        };
        tokio::time::sleep_until(Instant::now() + pause).await;
    }
}
