//! The single writer: one connection on its own thread that commits the
//! operations that arrived together in one transaction (group commit) and
//! answers each caller only after that commit.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};

use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use super::Tx;
use super::checkpointer::Poke;
use crate::env::store::Tally;
use crate::env::wake::{Touched, Wakes};
use crate::env::{Clock, EnvError, EnvOptions, EnvResult};

/// A unit of work for the writer: runs inside the batch's transaction.
pub(crate) trait Job: Send {
    /// Run the operation; the returned reply is finished after the commit.
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Box<dyn Reply>;
    /// Answer without running (the batch could not start).
    fn abort(self: Box<Self>, err: EnvError);
}

/// The answer of a job that ran, held back until its batch commits.
pub(crate) trait Reply: Send {
    /// Whether the operation succeeded (and so must be kept).
    fn ok(&self) -> bool;
    /// Deliver the answer: the operation's own result, or the commit's error.
    fn finish(self: Box<Self>, commit: EnvResult<()>);
}

struct WriteJob<T, F> {
    op: F,
    reply: oneshot::Sender<EnvResult<T>>,
}

struct PendingReply<T> {
    result: EnvResult<T>,
    reply: oneshot::Sender<EnvResult<T>>,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> EnvResult<T> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Box<dyn Reply> {
        let result = (self.op)(tx);
        Box::new(PendingReply {
            result,
            reply: self.reply,
        })
    }

    fn abort(self: Box<Self>, err: EnvError) {
        let _ = self.reply.send(Err(err));
    }
}

impl<T: Send + 'static> Reply for PendingReply<T> {
    fn ok(&self) -> bool {
        self.result.is_ok()
    }

    fn finish(self: Box<Self>, commit: EnvResult<()>) {
        let answer = match (self.result, commit) {
            (Ok(_), Err(e)) => Err(e),
            (result, _) => result,
        };
        let _ = self.reply.send(answer);
    }
}

/// Package `op` as a job and the receiver its answer arrives on.
pub(crate) fn job<T, F>(op: F) -> (Box<dyn Job>, oneshot::Receiver<EnvResult<T>>)
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> EnvResult<T> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    (Box::new(WriteJob { op, reply }), rx)
}

/// The handle callers send jobs through.
pub(crate) type JobSender = Sender<Box<dyn Job>>;

/// Run one of the writer's own statements, prepared once (they run for
/// every operation: parsing them each time would cost more than many an
/// operation's own work).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Run the writer until every sender is dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    conn: Connection,
    jobs: Receiver<Box<dyn Job>>,
    clock: Arc<dyn Clock>,
    opts: EnvOptions,
    changed: watch::Sender<u64>,
    wakes: Arc<Wakes>,
    tally: Arc<Tally>,
    checkpoint: Poke,
) {
    let mut last_seq: u64 = conn
        .query_row(super::journal::LATEST_SEQ, [], |r| r.get::<_, i64>(0))
        .map(|v| v as u64)
        .unwrap_or(0);
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(opts.max_batch);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < opts.max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let err = EnvError::from(e);
            for job in batch.drain(..) {
                job.abort(err.clone());
            }
            continue;
        }
        let now = clock.now_ms();
        let mut seq = last_seq;
        let mut touched = Touched::default();
        let mut replies = Vec::with_capacity(batch.len());
        // Set when the batch's transaction can no longer be trusted (a
        // savepoint statement failed, or SQLite rolled the whole transaction
        // back after an I/O or disk-full error): nothing of it is committed and
        // every caller is told so.
        let mut broken: Option<EnvError> = None;
        for job in batch.drain(..) {
            if let Some(err) = &broken {
                job.abort(err.clone());
                continue;
            }
            if let Err(e) = exec(&conn, "SAVEPOINT op") {
                let err = EnvError::from(e);
                job.abort(err.clone());
                broken = Some(err);
                continue;
            }
            tally.operations.fetch_add(1, Ordering::Relaxed);
            let before = seq;
            let mut tx = Tx {
                conn: &conn,
                now,
                opts: &opts,
                last_seq: &mut seq,
                wakes: &wakes,
                touched: &mut touched,
            };
            // A panicking operation must not take the writer (and every later
            // write) down with it: its caller sees the writer's error and its
            // changes are rolled back.
            let reply = panic::catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))).ok();
            let keep = reply.as_ref().is_some_and(|r| r.ok());
            let end = if keep {
                exec(&conn, "RELEASE op")
            } else {
                seq = before;
                exec(&conn, "ROLLBACK TO op").and_then(|()| exec(&conn, "RELEASE op"))
            };
            if let Err(e) = end {
                broken = Some(EnvError::from(e));
            } else if conn.is_autocommit() {
                broken = Some(EnvError::Unavailable(
                    "the database rolled the transaction back".into(),
                ));
            }
            replies.extend(reply);
        }
        // Noted before the commit: a reader of other processes' commits
        // that sees this one at once must know it for this handle's own.
        let stretch = touched
            .first_seq()
            .filter(|_| broken.is_none())
            .map(|first| (first - 1, seq));
        if let Some((from, to)) = stretch {
            wakes.committed_here(from, to);
        }
        let commit = match broken {
            Some(err) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(err)
            }
            None => exec(&conn, "COMMIT").map_err(EnvError::from),
        };
        if commit.is_err() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            if let Some((from, to)) = stretch {
                wakes.forget_here(from, to);
            }
        } else {
            tally.commits.fetch_add(1, Ordering::Relaxed);
            checkpoint.poke();
        }
        if commit.is_ok() {
            wakes.dispatch(touched);
            if seq > last_seq {
                last_seq = seq;
                changed.send_modify(|v| *v = (*v).max(seq));
            }
        }
        for reply in replies {
            reply.finish(commit.clone());
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!("optimize on close failed: {e}");
    }
}
