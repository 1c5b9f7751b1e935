//! The single writer thread with group commit.
//!
//! SQLite allows one writer at a time, and the cost of a durable write is the fsync at commit.
//! So every mutation is sent to one thread, which takes whatever jobs are waiting (up to a
//! batch limit), runs each inside its own savepoint of one transaction, commits once, and only
//! then answers every caller. A job that fails rolls back its own savepoint without affecting
//! the others; a failed commit fails every job of the batch, and so does a savepoint that
//! cannot be rolled back (its half-done changes must never be committed). Throughput grows with the number
//! of concurrent writers while each caller still gets "durable when answered".
//!
//! Callers answered by a commit usually write again at once, but they reach the queue one by
//! one as their tasks wake; a writer that began the next transaction with whatever had
//! arrived, and committed it, would alternate small and large batches (64 waiting publishers
//! gathered 38 a commit on average). So writes that arrive while a batch runs join it before
//! its commit, and before it begins a transaction the writer waits, up to `gather_wait`, until
//! as many writes are queued as the previous batch held, when that was a crowd (16 or more;
//! waiting after smaller batches measured +0.7 ms of publish-to-handler latency at 1,000
//! events/s for no gain). A load that shrinks costs one wait, after which the expectation
//! follows it down.
//!
//! Writes of a [`Merge`] kind (publishes, appends) run together instead: those of one batch
//! share one savepoint, prepare their statements once and update shared rows (a topic's
//! counter) once, which is most of a small write's CPU on the writer thread. They still answer
//! one by one: if running them together fails, it is undone and each runs again alone in its
//! own savepoint, so a failing write fails only itself.
//!
//! Once SQLite reports the file damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`), in a job or in the
//! writer's own statements, every later write is refused with [`Error::Corrupt`]: a write
//! acknowledged into a damaged file may never be readable again.

use std::any::{Any, TypeId};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::db::Error;
use crate::integrity::is_corruption;

/// Why a whole batch failed.
#[derive(Debug, Clone)]
enum BatchFailure {
    /// The transaction could not begin or commit.
    Commit(String),
    /// The database is damaged: nothing more is written.
    Damaged(String),
}

impl BatchFailure {
    fn to_error(&self) -> Error {
        match self {
            Self::Commit(msg) => Error::CommitFailed(msg.clone()),
            Self::Damaged(msg) => Error::Corrupt(msg.clone()),
        }
    }
}

/// Runs after the batch's commit, with its outcome.
type Completion = Box<dyn FnOnce(Result<(), &BatchFailure>) + Send>;
/// One caller's write, run in its own savepoint; given no transaction when none could be
/// begun.
type Single = Box<dyn FnOnce(Option<&mut Transaction<'_>>) -> Step + Send>;
/// Runs the writes of one [`Merge`] kind of a batch together; given no transaction when
/// none could be begun.
type RunMerged = fn(Option<&mut Transaction<'_>>, Vec<Box<dyn Any + Send>>) -> Vec<Step>;

/// One caller's write as the writer thread receives it.
enum Job {
    Single(Single),
    /// A write that runs with the other writes of its kind in the batch (see [`Merge`]).
    Merged {
        kind: TypeId,
        run: RunMerged,
        /// The write and where to send its answer.
        write: Box<dyn Any + Send>,
    },
}

/// A kind of write whose writes in one batch run together, so that statements are prepared,
/// savepoints taken and shared rows (counters) updated once per batch instead of once per
/// write, while each write keeps its own answer.
///
/// The writes of a kind gathered into one batch are run by [`Merge::run_all`] inside one
/// savepoint. If that fails as a whole (an error, a panic), the savepoint is rolled back and
/// every write is run again alone, each in its own savepoint, with [`Merge::run_one`]: a
/// failing write fails only itself, as with [`Writer::write`].
pub(crate) trait Merge: Send + Sized + 'static {
    /// What a write answers.
    type Output: Send + 'static;
    /// How a write fails.
    type Error: From<Error> + std::error::Error + Send + 'static;

    /// Runs all of `writes`, in order, answering each. A write may be answered with an error
    /// only if it changed nothing; a failure that leaves changes behind must fail the whole
    /// call, which undoes all of it.
    fn run_all(conn: &Connection, writes: &[Self]) -> Answers<Self>;

    /// Runs one write alone (inside its own savepoint).
    fn run_one(conn: &Connection, write: &Self) -> Result<Self::Output, Self::Error>;
}

/// What [`Merge::run_all`] answers: one result per write, or a failure of them all.
pub(crate) type Answers<M> =
    Result<Vec<Result<<M as Merge>::Output, <M as Merge>::Error>>, <M as Merge>::Error>;

/// The merged writes of one kind waiting in a batch, and how to run them.
type Kind = (TypeId, RunMerged, Vec<Box<dyn Any + Send>>);

/// A merged write and the caller waiting for it.
type Waiting<M> = (
    M,
    oneshot::Sender<Result<<M as Merge>::Output, <M as Merge>::Error>>,
);

/// What the writer thread is asked to do.
enum Msg {
    /// A write, group-committed with others.
    Write(Job),
    /// Copy the WAL into the database file and truncate it; answers whether it was complete.
    Checkpoint(oneshot::Sender<Result<bool, Error>>),
}

/// What running a job inside the batch left behind.
struct Step {
    done: Completion,
    /// The job failed and its savepoint could not be rolled back: the transaction holds
    /// changes nobody asked for, so the whole batch must be abandoned.
    poisoned: bool,
    /// The job's failure says the database is damaged.
    corrupt: Option<String>,
}

/// A handle to the writer thread; cheap to clone. The thread stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Msg>,
    counts: Arc<Counts>,
    /// Whether [`Merge`] writes run together (else each alone, like any write).
    merge: bool,
}

/// Transactions and writes run so far, for seeing how well writes are gathered.
#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    writes: AtomicU64,
}

/// How many transactions the writer has run and how many writes they held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Transactions begun (each one commit, one fsync).
    pub batches: u64,
    /// Writes run inside them.
    pub writes: u64,
}

/// How the writer gathers a batch.
#[derive(Debug, Clone, Copy)]
struct Gather {
    max_batch: usize,
    wait: Duration,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
        gather_wait: Duration,
        merge: bool,
    ) -> Result<Self, Error> {
        let (jobs, rx) = mpsc::channel::<Msg>();
        let counts = Arc::new(Counts::default());
        let gather = Gather {
            max_batch: max_batch.max(1),
            wait: gather_wait,
        };
        let c = Arc::clone(&counts);
        thread::Builder::new()
            .name("flotilla-sqlite-writer".into())
            .spawn(move || run(conn, rx, gather, &c))
            .map_err(|e| Error::CommitFailed(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            jobs,
            counts,
            merge,
        })
    }

    /// Transactions run and writes they held since the database was opened.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counts.batches.load(Ordering::Relaxed),
            writes: self.counts.writes.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` inside the next group-committed transaction and returns its result once that
    /// transaction is durable. If `f` fails, its own changes are rolled back and the error is
    /// returned; other writes in the same batch are unaffected.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + std::error::Error + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let job = Job::Single(Box::new(move |txn| {
            run_job(txn, f, move |r| {
                // The caller may have stopped waiting; the write is durable regardless.
                let _ = tx.send(r);
            })
        }));
        self.jobs
            .send(Msg::Write(job))
            .map_err(|_| E::from(Error::WriterStopped))?;
        rx.await.map_err(|_| E::from(Error::WriterStopped))?
    }

    /// Runs `write` in the next group-committed transaction together with the other writes
    /// of its kind in that transaction (see [`Merge`]) and returns its answer once that
    /// transaction is durable.
    pub(crate) async fn write_merged<M: Merge>(&self, write: M) -> Result<M::Output, M::Error> {
        if !self.merge {
            return self.write(move |c| M::run_one(c, &write)).await;
        }
        let (tx, rx) = oneshot::channel();
        let waiting: Waiting<M> = (write, tx);
        let job = Job::Merged {
            kind: TypeId::of::<M>(),
            run: run_merged::<M>,
            write: Box::new(waiting),
        };
        self.jobs
            .send(Msg::Write(job))
            .map_err(|_| M::Error::from(Error::WriterStopped))?;
        rx.await.map_err(|_| M::Error::from(Error::WriterStopped))?
    }

    /// Runs schema set-up or any other write synchronously, blocking the calling thread (for
    /// start-up; do not call it on a path that serves requests).
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + std::error::Error + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<T, E>>(1);
        let job = Job::Single(Box::new(move |txn| {
            run_job(txn, f, move |r| {
                let _ = tx.send(r);
            })
        }));
        self.jobs
            .send(Msg::Write(job))
            .map_err(|_| E::from(Error::WriterStopped))?;
        rx.recv().map_err(|_| E::from(Error::WriterStopped))?
    }

    /// Checkpoints the WAL into the database file between two batches (a checkpoint cannot
    /// run inside a transaction) and truncates it; `false` when readers kept part of it.
    pub(crate) async fn checkpoint(&self) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Checkpoint(tx))
            .map_err(|_| Error::WriterStopped)?;
        rx.await.map_err(|_| Error::WriterStopped)?
    }
}

fn run_job<T, E, F, R>(txn: Option<&mut Transaction<'_>>, f: F, reply: R) -> Step
where
    T: Send + 'static,
    E: From<Error> + std::error::Error + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E>,
    R: FnOnce(Result<T, E>) + Send + 'static,
{
    let (outcome, poisoned) = match txn.map(Transaction::savepoint) {
        // No transaction: the batch fails as a whole and the completion says why.
        None => (Err(E::from(Error::WriterStopped)), false),
        Some(Err(e)) => (Err(E::from(Error::Sqlite(e))), false),
        Some(Ok(mut sp)) => {
            // A panicking job must not take the writer (and every other caller) down with it.
            let result = catch_unwind(AssertUnwindSafe(|| f(&sp)));
            let failed = match result {
                Ok(Ok(v)) => {
                    return match sp.commit() {
                        Ok(()) => step(Ok(v), false, reply),
                        // A savepoint that cannot be released leaves the transaction in an
                        // unknown state; abandon the batch rather than guess.
                        Err(e) => step(Err(E::from(Error::Sqlite(e))), true, reply),
                    };
                }
                Ok(Err(e)) => e,
                Err(_) => E::from(Error::CommitFailed("the write panicked".into())),
            };
            let poisoned = match sp.rollback() {
                Ok(()) => false,
                Err(e) => {
                    tracing::error!(error = %e, "cannot roll back a failed write; abandoning its batch");
                    true
                }
            };
            (Err(failed), poisoned)
        }
    };
    step(outcome, poisoned, reply)
}

/// Runs the writes of kind `M` gathered into one batch: together, or one by one when that
/// fails (see [`Merge`]).
fn run_merged<M: Merge>(
    txn: Option<&mut Transaction<'_>>,
    writes: Vec<Box<dyn Any + Send>>,
) -> Vec<Step> {
    let (writes, replies): (Vec<M>, Vec<_>) = writes
        .into_iter()
        .filter_map(|w| w.downcast::<Waiting<M>>().ok())
        .map(|w| *w)
        .unzip();
    let answer = |tx: oneshot::Sender<Result<M::Output, M::Error>>| {
        move |r| {
            // The caller may have stopped waiting; the write is durable regardless.
            let _ = tx.send(r);
        }
    };
    let Some(txn) = txn else {
        let stopped = |tx| step(Err(M::Error::from(Error::WriterStopped)), false, answer(tx));
        return replies.into_iter().map(stopped).collect();
    };
    match run_together::<M>(txn, &writes) {
        Together::Done(answers) => answers
            .into_iter()
            .zip(replies)
            .map(|(a, tx)| step(a, false, answer(tx)))
            .collect(),
        // Damage is not retried: the batch is refused as a whole.
        Together::Damaged(detail) => replies
            .into_iter()
            .map(|tx| {
                let e = M::Error::from(Error::Corrupt(detail.clone()));
                step(Err(e), false, answer(tx))
            })
            .collect(),
        Together::Poisoned(detail) => replies
            .into_iter()
            .map(|tx| {
                let e = M::Error::from(Error::CommitFailed(detail.clone()));
                step(Err(e), true, answer(tx))
            })
            .collect(),
        Together::Failed => writes
            .into_iter()
            .zip(replies)
            .map(|(w, tx)| run_job(Some(&mut *txn), |c| M::run_one(c, &w), answer(tx)))
            .collect(),
    }
}

/// How running the writes of a kind together went.
enum Together<T> {
    /// One answer per write, their changes kept.
    Done(Vec<T>),
    /// Nothing was kept: run each alone.
    Failed,
    /// The savepoint could neither be released nor rolled back: abandon the batch.
    Poisoned(String),
    /// SQLite reported the database damaged (rolled back).
    Damaged(String),
}

fn run_together<M: Merge>(
    txn: &mut Transaction<'_>,
    writes: &[M],
) -> Together<Result<M::Output, M::Error>> {
    let Ok(mut sp) = txn.savepoint() else {
        return Together::Failed;
    };
    let damaged = match catch_unwind(AssertUnwindSafe(|| M::run_all(&sp, writes))) {
        Ok(Ok(answers)) if answers.len() == writes.len() => {
            return match sp.commit() {
                Ok(()) => Together::Done(answers),
                Err(e) => Together::Poisoned(format!("cannot release a savepoint: {e}")),
            };
        }
        Ok(Err(e)) => corruption_in(&e),
        _ => None,
    };
    match sp.rollback() {
        Ok(()) => damaged.map_or(Together::Failed, Together::Damaged),
        Err(e) => {
            tracing::error!(error = %e, "cannot roll back merged writes; abandoning their batch");
            Together::Poisoned(format!("cannot roll back merged writes: {e}"))
        }
    }
}

/// The corruption `e` (or an error it wraps) reports, if any.
fn corruption_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let reported = match (
            c.downcast_ref::<rusqlite::Error>(),
            c.downcast_ref::<Error>(),
        ) {
            (Some(sqlite), _) => is_corruption(sqlite),
            (_, Some(Error::Corrupt(_))) => true,
            _ => false,
        };
        if reported {
            return Some(c.to_string());
        }
        cause = c.source();
    }
    None
}

fn step<T, E, R>(outcome: Result<T, E>, poisoned: bool, reply: R) -> Step
where
    T: Send + 'static,
    E: From<Error> + std::error::Error + Send + 'static,
    R: FnOnce(Result<T, E>) + Send + 'static,
{
    let corrupt = outcome.as_ref().err().and_then(|e| corruption_in(e));
    let done: Completion = Box::new(move |commit: Result<(), &BatchFailure>| {
        let answer = match commit {
            Ok(()) => outcome,
            Err(failure) => Err(E::from(failure.to_error())),
        };
        reply(answer);
    });
    Step {
        done,
        poisoned,
        corrupt,
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Msg>, gather: Gather, counts: &Counts) {
    let mut damaged: Option<String> = None;
    // Writes the previous batch held: how many to wait for before the next one begins.
    let mut expected = 1;
    let mut next = rx.recv().ok();
    while let Some(msg) = next.take() {
        let first = match msg {
            Msg::Write(job) => job,
            Msg::Checkpoint(reply) => {
                let _ = reply.send(checkpoint(&conn, damaged.as_deref()));
                next = rx.recv().ok();
                continue;
            }
        };
        let mut batch = vec![first];
        next = gather_batch(&rx, &mut batch, gather, expected);
        let mut held = batch.len();
        match &damaged {
            Some(msg) => refuse(batch, &BatchFailure::Damaged(msg.clone()), counts),
            None => {
                // Writes that arrive while the batch runs join it, up to the limit, unless a
                // checkpoint is waiting to be served first.
                let mut late = || {
                    if next.is_some() || held >= gather.max_batch {
                        return None;
                    }
                    match rx.try_recv() {
                        Ok(Msg::Write(job)) => {
                            held += 1;
                            Some(job)
                        }
                        Ok(other) => {
                            next = Some(other);
                            None
                        }
                        Err(_) => None,
                    }
                };
                damaged = commit_batch(&mut conn, batch, &mut late, counts);
            }
        }
        expected = held;
        if next.is_none() {
            next = rx.recv().ok();
        }
    }
}

/// The smallest previous batch worth waiting for: below it, the writer takes what is queued.
const CROWD: usize = 16;

/// Adds the queued writes to `batch`, waiting up to `gather.wait` while it holds fewer than
/// `expected`. Returns a message that must be served after this batch (a checkpoint), if one
/// came.
fn gather_batch(
    rx: &mpsc::Receiver<Msg>,
    batch: &mut Vec<Job>,
    gather: Gather,
    expected: usize,
) -> Option<Msg> {
    // A few writes (a publish and the engine's ack) are not worth delaying for.
    let wanted = match expected >= CROWD {
        true => expected.min(gather.max_batch),
        false => 1,
    };
    let deadline = Instant::now() + gather.wait;
    while batch.len() < gather.max_batch {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if batch.len() >= wanted => return None,
            Err(mpsc::TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(msg) => msg,
                    Err(_) => return None,
                }
            }
        };
        match msg {
            Msg::Write(job) => batch.push(job),
            // Served right after this batch, in the order it was asked.
            other => return Some(other),
        }
    }
    None
}

fn checkpoint(conn: &Connection, damaged: Option<&str>) -> Result<bool, Error> {
    if let Some(msg) = damaged {
        return Err(Error::Corrupt(msg.to_owned()));
    }
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    Ok(busy == 0)
}

impl Counts {
    /// Counts a batch of `writes`, before they are answered (so a caller that was answered
    /// sees its batch counted).
    fn add(&self, writes: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
    }
}

/// Fails every job of `batch` with `failure`, writing nothing.
fn refuse(batch: Vec<Job>, failure: &BatchFailure, counts: &Counts) {
    counts.add(batch.len());
    for job in batch {
        let steps = match job {
            Job::Single(job) => vec![job(None)],
            Job::Merged { run, write, .. } => run(None, vec![write]),
        };
        for s in steps {
            (s.done)(Err(failure));
        }
    }
}

/// The merged writes of a batch waiting to run, by kind, in the order kinds first came.
#[derive(Default)]
struct Pending {
    kinds: Vec<Kind>,
}

impl Pending {
    /// Runs `job` now when it is a single write (its step is pushed to `steps`), or keeps it
    /// with its kind.
    fn take(&mut self, job: Job, txn: &mut Transaction<'_>, steps: &mut Vec<Step>) {
        match job {
            Job::Single(job) => steps.push(job(Some(txn))),
            Job::Merged { kind, run, write } => {
                match self.kinds.iter_mut().find(|(k, ..)| *k == kind) {
                    Some((.., writes)) => writes.push(write),
                    None => self.kinds.push((kind, run, vec![write])),
                }
            }
        }
    }

    /// Runs every kind's writes (or, with no transaction, only produces their steps).
    fn run(&mut self, mut txn: Option<&mut Transaction<'_>>, steps: &mut Vec<Step>) {
        for (_, run, writes) in self.kinds.drain(..) {
            steps.extend(run(txn.as_deref_mut(), writes));
        }
    }
}

fn healthy(steps: &[Step]) -> bool {
    steps.iter().all(|s| !s.poisoned && s.corrupt.is_none())
}

/// Commits `batch` together with whatever `late` yields before the commit; returns the damage
/// SQLite reported, if it did.
fn commit_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    late: &mut dyn FnMut() -> Option<Job>,
    counts: &Counts,
) -> Option<String> {
    let mut txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, batch = batch.len(), "cannot begin a write transaction");
            let failure = fail_with(&e, format!("cannot begin a write transaction: {e}"));
            refuse(batch, &failure, counts);
            return damage(&failure);
        }
    };
    let mut steps: Vec<Step> = Vec::with_capacity(batch.len());
    let mut pending = Pending::default();
    for job in batch {
        pending.take(job, &mut txn, &mut steps);
    }
    // Single writes run as they come; merged ones once no more writes are waiting, then
    // again for those that came meanwhile.
    loop {
        while healthy(&steps)
            && let Some(job) = late()
        {
            pending.take(job, &mut txn, &mut steps);
        }
        if pending.kinds.is_empty() {
            break;
        }
        match healthy(&steps) {
            true => pending.run(Some(&mut txn), &mut steps),
            // The batch is abandoned: the merged writes only need their steps to fail.
            false => pending.run(None, &mut steps),
        }
    }
    let corrupt = steps.iter().find_map(|s| s.corrupt.clone());
    let result = if let Some(detail) = corrupt {
        drop(txn);
        Err(BatchFailure::Damaged(damaged_message(&detail)))
    } else if steps.iter().any(|s| s.poisoned) {
        // Dropping the transaction rolls every job of the batch back.
        drop(txn);
        Err(BatchFailure::Commit(
            "a failed write could not be rolled back; the batch was abandoned".to_owned(),
        ))
    } else {
        txn.commit().map_err(|e| fail_with(&e, e.to_string()))
    };
    if let Err(e) = &result {
        tracing::error!(error = ?e, batch = steps.len(), "group commit failed");
    }
    counts.add(steps.len());
    for s in steps {
        (s.done)(result.as_ref().map(|_| ()));
    }
    result.err().as_ref().and_then(damage)
}

fn fail_with(e: &rusqlite::Error, msg: String) -> BatchFailure {
    match is_corruption(e) {
        true => BatchFailure::Damaged(damaged_message(&e.to_string())),
        false => BatchFailure::Commit(msg),
    }
}

fn damage(failure: &BatchFailure) -> Option<String> {
    match failure {
        BatchFailure::Damaged(msg) => Some(msg.clone()),
        BatchFailure::Commit(_) => None,
    }
}

fn damaged_message(detail: &str) -> String {
    format!(
        "the database reported corruption ({detail}); every write is refused until it is \
         restored: {}",
        crate::integrity::RECOVERY_HINT
    )
}

#[cfg(test)]
mod tests {
    use crate::{Database, Options};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{Gather, Job, Msg, Step, gather_batch};

    fn noop() -> Job {
        Job::Single(Box::new(|_| Step {
            done: Box::new(|_| ()),
            poisoned: false,
            corrupt: None,
        }))
    }

    /// Sends `n` writes from another thread, one every millisecond.
    fn trickle(n: usize) -> mpsc::Receiver<Msg> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..n {
                std::thread::sleep(Duration::from_millis(1));
                if tx.send(Msg::Write(noop())).is_err() {
                    return;
                }
            }
        });
        rx
    }

    const PATIENT: Gather = Gather {
        max_batch: 1024,
        wait: Duration::from_secs(600),
    };

    #[test]
    fn a_batch_waits_for_as_many_writes_as_the_previous_one_held() {
        let rx = trickle(30);
        let mut batch = vec![noop()];
        assert!(gather_batch(&rx, &mut batch, PATIENT, 20).is_none());
        assert_eq!(batch.len(), 20, "the 19 that came later were gathered");
    }

    #[test]
    fn after_a_small_batch_nothing_is_waited_for() {
        for previous in [1, super::CROWD - 1] {
            let rx = trickle(30);
            let mut batch = vec![noop()];
            gather_batch(&rx, &mut batch, PATIENT, previous);
            assert_eq!(batch.len(), 1, "after a batch of {previous}");
        }
    }

    #[test]
    fn gathering_stops_at_the_batch_limit_and_at_a_checkpoint() {
        let rx = trickle(10);
        let mut batch = vec![noop()];
        let small = Gather {
            max_batch: 3,
            ..PATIENT
        };
        gather_batch(&rx, &mut batch, small, 20);
        assert_eq!(batch.len(), 3);

        let (tx, rx) = mpsc::channel();
        let (reply, _) = tokio::sync::oneshot::channel();
        tx.send(Msg::Write(noop())).unwrap();
        tx.send(Msg::Checkpoint(reply)).unwrap();
        let mut batch = vec![noop()];
        let after = gather_batch(&rx, &mut batch, PATIENT, 20);
        assert!(matches!(after, Some(Msg::Checkpoint(_))));
        assert_eq!(
            batch.len(),
            2,
            "the write queued before the checkpoint is in"
        );
    }

    #[test]
    fn gathering_ends_when_every_sender_is_gone() {
        let (tx, rx) = mpsc::channel();
        tx.send(Msg::Write(noop())).unwrap();
        drop(tx);
        let mut batch = vec![noop()];
        assert!(gather_batch(&rx, &mut batch, PATIENT, 20).is_none());
        assert_eq!(batch.len(), 2);
    }

    fn open() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(Options::new(dir.path().join("t.db"))).unwrap();
        db.writer()
            .write_blocking(|c| {
                c.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
                    .map_err(crate::Error::from)
            })
            .unwrap();
        (dir, db)
    }

    fn count(db: &Database) -> i64 {
        db.reads()
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_all_durable_when_answered() {
        let (_dir, db) = open();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let w = db.writer().clone();
                tokio::spawn(async move {
                    w.write(move |c| {
                        c.execute("INSERT INTO t (v) VALUES (?1)", [i])
                            .map_err(crate::Error::from)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(count(&db), 200);
        let stats = db.writer().stats();
        assert_eq!(
            stats.writes, 201,
            "the table's creation and the 200 inserts"
        );
        assert!((1..=201).contains(&stats.batches), "{stats:?}");
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_only_itself() {
        let (_dir, db) = open();
        let w = db.writer().clone();
        let ok = w.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (1)", [])
                .map_err(crate::Error::from)
        });
        let dup = w.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (2)", [])?;
            c.execute("INSERT INTO t (v) VALUES (1)", [])
                .map_err(crate::Error::from)
        });
        let (a, b) = tokio::join!(ok, dup);
        assert!(a.is_ok());
        assert!(b.is_err());
        assert_eq!(
            count(&db),
            1,
            "the failed write's first insert was rolled back too"
        );
    }

    /// Inserts its value into `t`; counts the times writes were run together.
    struct Put(i64);

    static TOGETHER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl super::Merge for Put {
        type Output = ();
        type Error = crate::Error;

        fn run_all(c: &rusqlite::Connection, writes: &[Self]) -> super::Answers<Self> {
            TOGETHER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for w in writes {
                c.execute("INSERT INTO t (v) VALUES (?1)", [w.0])?;
            }
            Ok(writes.iter().map(|_| Ok(())).collect())
        }

        fn run_one(c: &rusqlite::Connection, w: &Self) -> Result<(), crate::Error> {
            c.execute("INSERT INTO t (v) VALUES (?1)", [w.0])?;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merged_writes_run_together_and_a_failing_one_fails_alone() {
        use std::future::Future;
        use std::task::{Context, Waker};

        let (_dir, db) = open();
        let w = db.writer().clone();
        // Hold the writer so that every write below is queued into one batch.
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, held) = mpsc::channel::<()>();
        let holder = tokio::spawn({
            let w = w.clone();
            async move {
                w.write(move |_| {
                    let _ = started_tx.send(());
                    held.recv().unwrap();
                    Ok::<_, crate::Error>(())
                })
                .await
            }
        });
        started.await.unwrap();
        let before = TOGETHER.load(std::sync::atomic::Ordering::Relaxed);
        let mut writes: Vec<_> = [1, 2, 1, 3]
            .into_iter()
            .map(|v| Box::pin(w.write_merged(Put(v))))
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        for f in &mut writes {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for f in writes {
            answers.push(f.await.is_ok());
        }
        assert_eq!(
            answers,
            [true, true, false, true],
            "only the repeated value failed"
        );
        assert_eq!(count(&db), 3);
        assert!(
            TOGETHER.load(std::sync::atomic::Ordering::Relaxed) > before,
            "they were first run together"
        );
    }

    #[tokio::test]
    async fn a_panicking_write_does_not_stop_the_writer() {
        let (_dir, db) = open();
        let w = db.writer().clone();
        let r: Result<(), crate::Error> = w.write(|_| panic!("boom")).await;
        assert!(r.is_err());
        w.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (7)", [])
                .map_err(crate::Error::from)
        })
        .await
        .unwrap();
        assert_eq!(count(&db), 1);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_fails_with_the_reason_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Database::open(Options::new(&path)).unwrap();
        db.writer()
            .write_blocking(|c| {
                Ok::<_, crate::Error>(c.execute_batch("CREATE TABLE t (v INTEGER)")?)
            })
            .unwrap();
        // Another process holds the write lock past the writer's busy timeout.
        let intruder = rusqlite::Connection::open(&path).unwrap();
        intruder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let w = db.writer().clone();
        let refused: Result<usize, crate::Error> = w
            .write(|c| Ok(c.execute("INSERT INTO t (v) VALUES (1)", [])?))
            .await;
        match refused {
            Err(crate::Error::CommitFailed(msg)) => {
                assert!(msg.contains("cannot begin"), "{msg}");
            }
            other => panic!("expected CommitFailed naming the cause, got {other:?}"),
        }
        intruder.execute_batch("ROLLBACK").unwrap();
        w.write(|c| Ok::<_, crate::Error>(c.execute("INSERT INTO t (v) VALUES (2)", [])?))
            .await
            .unwrap();
        assert_eq!(count(&db), 1);
    }
    #[tokio::test]
    async fn once_corruption_is_reported_no_later_write_is_acknowledged() {
        let (_dir, db) = open();
        let w = db.writer().clone();
        let corrupt = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("database disk image is malformed".into()),
        );
        let r: Result<(), crate::Error> = w.write(move |_| Err(corrupt.into())).await;
        assert!(r.is_err());
        let later: Result<usize, crate::Error> = w
            .write(|c| Ok(c.execute("INSERT INTO t (v) VALUES (1)", [])?))
            .await;
        match later {
            Err(crate::Error::Corrupt(msg)) => assert!(msg.contains("restore"), "{msg}"),
            other => panic!("expected Error::Corrupt, got {other:?}"),
        }
        assert_eq!(count(&db), 0, "the refused write was not stored");
        assert!(matches!(
            db.checkpoint().await,
            Err(crate::Error::Corrupt(_))
        ));
    }
}
