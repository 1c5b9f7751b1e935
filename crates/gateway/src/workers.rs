//! The gateway on worker threads, one event loop each, like nginx's worker processes: each
//! worker is a current-thread tokio runtime on a thread of its own, with its own listening
//! socket on the same address (`SO_REUSEPORT`: the kernel spreads new connections over them)
//! and its own upstream connection pool. A connection, its requests and the upstream
//! connections they use stay on one thread: no work-stealing scheduler, no cross-thread wake-up
//! per request. What must be shared stays shared: the routing table (a reload reaches every
//! worker), metrics, the response cache, the listener's certificate and the connection cap.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::server;
use crate::state::Shared;

/// Listening backlog of each worker's socket (tokio's `TcpListener::bind` uses the same).
const BACKLOG: u32 = 1024;

/// The listening sockets of [`crate::Gateway::serve_workers`], one per worker. Listening
/// before any worker starts lets a start fail on a taken address, and no connection is refused
/// while the workers come up.
#[derive(Debug)]
pub struct WorkerListeners {
    sockets: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl WorkerListeners {
    /// Listens on `addr` with `workers` sockets sharing it through `SO_REUSEPORT` (0 = one per
    /// core available to this process). Port 0 is resolved by the first socket; the others
    /// bind the port it got. Where `SO_REUSEPORT` is unavailable, one socket serves whatever
    /// `workers` says.
    pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Self> {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let workers = if cfg!(unix) { workers } else { 1 };
        // tokio registers a listening socket with a reactor; this one only lends it for the
        // `listen` call, each worker registers its socket with its own.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let bound = {
            let _in_rt = rt.enter();
            listening_sockets(addr, workers)
        };
        // Not dropped: dropping a runtime inside another one's context (the caller's) panics.
        rt.shutdown_background();
        let (sockets, addr) = bound?;
        Ok(Self { sockets, addr })
    }

    /// The address every worker listens on (the resolved port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many workers will serve.
    pub fn workers(&self) -> usize {
        self.sockets.len()
    }
}

/// `workers` sockets listening on `addr`; the first resolves port 0 for the rest.
fn listening_sockets(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let first = listening(addr)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(listening(addr)?);
    }
    Ok((sockets, addr))
}

fn listening(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // Non-blocking, as the worker's runtime needs it.
    socket.listen(BACKLOG)?.into_std()
}

/// Runs one worker thread per socket until `shutdown`, then waits for every worker to drain.
pub(crate) async fn serve(
    shared: &Shared,
    listeners: WorkerListeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Dropping this future (not only cancelling `shutdown`) stops the workers too.
    let stop = shutdown.child_token();
    let _stop_on_drop = stop.clone().drop_guard();
    let permits = server::connection_permits(&shared.server);
    let mut done = Vec::with_capacity(listeners.sockets.len());
    for (i, socket) in listeners.sockets.into_iter().enumerate() {
        let worker = Arc::new(shared.for_worker());
        let (worker_stop, permits) = (stop.clone(), permits.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{i}"))
            .spawn(move || {
                let result = run_worker(worker, socket, worker_stop.clone(), permits);
                if result.is_err() {
                    // One worker cannot serve: stop the others rather than serve at a fraction.
                    worker_stop.cancel();
                }
                let _ = tx.send(result);
            });
        if let Err(e) = thread {
            stop.cancel();
            return Err(Error::Internal(format!("cannot start gateway worker: {e}")));
        }
        done.push(rx);
    }
    let mut first_error = None;
    for rx in done {
        let result = rx
            .await
            .unwrap_or_else(|_| Err(Error::Internal("a gateway worker panicked".into())));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn run_worker(
    shared: Arc<Shared>,
    socket: std::net::TcpListener,
    stop: CancellationToken,
    permits: Arc<tokio::sync::Semaphore>,
) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start a worker runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(socket)
            .map_err(|e| Error::Internal(format!("cannot listen: {e}")))?;
        server::serve(shared, listener, stop, permits)
            .await
            .map_err(|e| Error::Internal(format!("listener failed: {e}")))
    })
}
