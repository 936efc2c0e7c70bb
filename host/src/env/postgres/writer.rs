//! The writer: one connection per host that commits the operations that
//! arrived together in one transaction (group commit) and answers each caller
//! only after that commit.
//!
//! Operations are re-runnable (`AsyncFn`), and their expected failures
//! (a stale token, a conflict) are values that write nothing. A batch whose
//! transaction the database breaks (a deadlock, a constraint, a statement
//! error) is rolled back and run again one operation per transaction, so one
//! bad operation never fails the others. A batch whose commit was sent but
//! not answered (the connection died) is never run again: its callers are
//! told the outcome is unknown, so nothing is done twice.
//!
//! Events are buffered and appended last, numbered from the one-row
//! `journal_head` in the same statement that sends one NOTIFY for the
//! whole batch: sequence numbers follow commit order, without gaps.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use super::{Params, Prepared, channel, connect, listen, schema};
use crate::env::limits::i;
use crate::env::location::PgTarget;
use crate::env::store::Tally;
use crate::env::{Clock, EnvError, EnvOptions, EnvResult, OpenError, SystemClock};

/// An event waiting for its sequence number at the end of the batch.
struct NewEvent {
    agent: String,
    kind: String,
    subject: String,
    detail: String,
}

/// What a write operation sees: the batch's transaction and its time.
pub(crate) struct PgTx<'c> {
    /// The transaction's time: the database clock read once at its start
    /// (or the injected clock).
    pub(crate) now: u64,
    pub(crate) opts: &'c EnvOptions,
    client: &'c Client,
    prepared: &'c Prepared,
    events: Vec<NewEvent>,
    /// The database error that broke the transaction, if one did.
    broken: Option<tokio_postgres::Error>,
}

impl PgTx<'_> {
    /// Run a statement (prepared once per connection) and return its rows.
    pub(crate) async fn query(&mut self, sql: &str, params: Params<'_>) -> EnvResult<Vec<Row>> {
        let result = async {
            let stmt = self.prepared.get(self.client, sql).await?;
            self.client.query(&stmt, params).await
        }
        .await;
        result.map_err(|e| {
            let err = EnvError::from(&e);
            self.broken.get_or_insert(e);
            err
        })
    }

    /// The row a statement returns, if any.
    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> EnvResult<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// The row a statement always returns.
    pub(crate) async fn query_one(&mut self, sql: &str, params: Params<'_>) -> EnvResult<Row> {
        self.query_opt(sql, params).await?.ok_or_else(|| {
            EnvError::Unavailable(format!("the database returned no row for: {sql}"))
        })
    }

    /// Append an event to the journal (numbered when the batch ends).
    pub(crate) fn journal(
        &mut self,
        agent: &str,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) {
        self.events.push(NewEvent {
            agent: agent.to_owned(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_string(),
        });
    }
}

impl From<&tokio_postgres::Error> for EnvError {
    fn from(e: &tokio_postgres::Error) -> Self {
        super::db_error(e)
    }
}

/// A queued operation, type-erased for the writer.
pub(crate) type Batchable = Box<dyn Job>;

/// A unit of work for the writer.
pub(crate) trait Job: Send {
    /// The advisory lock keys the operation needs for its whole transaction.
    fn locks(&self) -> &[i32];
    /// Run (or run again) the operation; returns whether it succeeded.
    fn run<'a>(&'a mut self, tx: &'a mut PgTx<'_>) -> Pin<Box<dyn Future<Output = bool> + 'a>>;
    /// Deliver the answer: the operation's own result, or the commit's error.
    fn finish(self: Box<Self>, commit: EnvResult<()>);
}

struct OpJob<T, F> {
    locks: Vec<i32>,
    op: F,
    result: Option<EnvResult<T>>,
    reply: oneshot::Sender<EnvResult<T>>,
}

impl<T, F> Job for OpJob<T, F>
where
    T: Send + 'static,
    F: for<'t, 'c> AsyncFn(&'t mut PgTx<'c>) -> EnvResult<T> + Send + 'static,
{
    fn locks(&self) -> &[i32] {
        &self.locks
    }

    fn run<'a>(&'a mut self, tx: &'a mut PgTx<'_>) -> Pin<Box<dyn Future<Output = bool> + 'a>> {
        Box::pin(async move {
            let result = (self.op)(tx).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, commit: EnvResult<()>) {
        let answer = match (self.result, commit) {
            (_, Err(e)) => Err(e),
            (Some(result), Ok(())) => result,
            (None, Ok(())) => Err(EnvError::Unavailable("the operation did not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// Package `op` as a job and the receiver its answer arrives on.
pub(crate) fn job<T, F>(locks: Vec<i32>, op: F) -> (Batchable, oneshot::Receiver<EnvResult<T>>)
where
    T: Send + 'static,
    F: for<'t, 'c> AsyncFn(&'t mut PgTx<'c>) -> EnvResult<T> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let job = OpJob {
        locks,
        op,
        result: None,
        reply,
    };
    (Box::new(job), rx)
}

/// What the writer needs to start.
pub(crate) struct Setup {
    pub(crate) target: PgTarget,
    pub(crate) shown: String,
    pub(crate) opts: EnvOptions,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) offset_ms: Arc<AtomicI64>,
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) tally: Arc<Tally>,
    pub(crate) may_create: bool,
}

/// How a batch's transaction went wrong.
enum Broken {
    /// The database refused it and rolled it back: its operations may run again.
    RolledBack(EnvError),
    /// The outcome is unknown (the connection died): run nothing again.
    Unknown(EnvError),
}

struct Writer {
    setup: Setup,
    client: Client,
    prepared: Prepared,
    channel: String,
    /// The journal head this writer last saw committed.
    head: u64,
}

/// Connect, check (or create) the schema, report readiness on `ready`, then
/// commit batches until every sender is gone.
pub(crate) async fn run(
    setup: Setup,
    mut jobs: mpsc::UnboundedReceiver<Batchable>,
    ready: std::sync::mpsc::Sender<Result<(), OpenError>>,
) {
    let rt = Handle::current();
    let client = match connect::connect(&setup.target, &setup.shown, &setup.opts, &rt).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if let Err(e) = schema::prepare(&client, &setup.target, &setup.shown, setup.may_create).await {
        let _ = ready.send(Err(e));
        return;
    }
    let mut w = Writer {
        channel: channel(&setup.target.schema),
        setup,
        client,
        prepared: Prepared::default(),
        head: 0,
    };
    match w.read_head().await {
        Ok(head) => {
            w.head = head;
            w.setup.changed.send_modify(|v| *v = (*v).max(head));
        }
        Err(e) => {
            let _ = ready.send(Err(OpenError::Other {
                path: w.setup.shown.clone().into(),
                detail: format!("cannot read the journal: {e}"),
            }));
            return;
        }
    }
    let (stop_listener, stopped) = watch::channel(false);
    let listener = tokio::spawn(listen::run(
        w.setup.target.clone(),
        w.setup.opts.clone(),
        w.setup.changed.clone(),
        stopped,
    ));
    let _ = ready.send(Ok(()));

    let mut batch: Vec<Batchable> = Vec::with_capacity(w.setup.opts.max_batch);
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        while batch.len() < w.setup.opts.max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        w.commit_batch(&mut batch).await;
    }
    let _ = stop_listener.send(true);
    let _ = listener.await;
}

impl Writer {
    async fn read_head(&self) -> Result<u64, tokio_postgres::Error> {
        let row = self
            .client
            .query_one("SELECT seq FROM journal_head", &[])
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Commit `batch` together, or else each of its operations alone.
    async fn commit_batch(&mut self, batch: &mut Vec<Batchable>) {
        if let Err(e) = self.ensure_connected().await {
            for job in batch.drain(..) {
                job.finish(Err(e.clone()));
            }
            return;
        }
        match self.transaction(batch).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    job.finish(Ok(()));
                }
            }
            Err(Broken::Unknown(e)) => {
                for job in batch.drain(..) {
                    job.finish(Err(e.clone()));
                }
            }
            Err(Broken::RolledBack(e)) if batch.len() == 1 => {
                batch.pop().expect("one job").finish(Err(e));
            }
            Err(Broken::RolledBack(_)) => {
                for job in batch.drain(..) {
                    let mut one = vec![job];
                    let outcome = self.transaction(&mut one).await;
                    let job = one.pop().expect("one job");
                    job.finish(outcome.map_err(|b| match b {
                        Broken::RolledBack(e) | Broken::Unknown(e) => e,
                    }));
                }
            }
        }
    }

    /// Reconnect a writer whose connection died.
    async fn ensure_connected(&mut self) -> EnvResult<()> {
        if !self.client.is_closed() {
            return Ok(());
        }
        let s = &self.setup;
        match connect::connect(&s.target, &s.shown, &s.opts, &Handle::current()).await {
            Ok(c) => {
                self.client = c;
                self.prepared = Prepared::default();
                tracing::info!("reconnected to {}", s.shown);
                Ok(())
            }
            Err(e) => {
                // Callers retry; do not let them spin against a dead server.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(EnvError::Unavailable(e.to_string()))
            }
        }
    }

    /// Run `jobs` in one transaction and commit it.
    async fn transaction(&mut self, jobs: &mut [Batchable]) -> Result<(), Broken> {
        let now = self.begin().await.map_err(|e| self.broken(e))?;
        let result = self.run_jobs(now, jobs).await;
        let head = match result {
            Ok(head) => head,
            Err(e) => {
                if !self.client.is_closed() {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                }
                return Err(self.broken(e));
            }
        };
        if let Err(e) = self.client.batch_execute("COMMIT").await {
            return Err(if e.is_closed() {
                Broken::Unknown(EnvError::Unavailable(
                    "the connection to PostgreSQL was lost while committing: the operation may \
                     or may not have taken effect; look before trying again"
                        .into(),
                ))
            } else {
                Broken::RolledBack(EnvError::from(&e))
            });
        }
        self.setup.tally.commits.fetch_add(1, Ordering::Relaxed);
        if let Some(head) = head {
            self.head = head;
            self.setup.changed.send_modify(|v| *v = (*v).max(head));
        }
        Ok(())
    }

    fn broken(&self, e: tokio_postgres::Error) -> Broken {
        if e.is_closed() || self.client.is_closed() {
            Broken::RolledBack(EnvError::Unavailable(
                "the connection to PostgreSQL was lost; nothing was changed: try again".into(),
            ))
        } else {
            Broken::RolledBack(EnvError::from(&e))
        }
    }

    /// Start a transaction and read its time: the injected clock's, or the
    /// database's (and this host's offset from it, for local timers).
    async fn begin(&self) -> Result<u64, tokio_postgres::Error> {
        if let Some(clock) = &self.setup.clock {
            self.client.batch_execute("BEGIN").await?;
            return Ok(clock.now_ms());
        }
        let before = SystemClock.now_ms();
        let messages = self
            .client
            .simple_query("BEGIN; SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8")
            .await?;
        let after = SystemClock.now_ms();
        let now = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<u64>().ok()),
                _ => None,
            })
            .unwrap_or(after);
        let local = (before + after) / 2;
        self.setup
            .offset_ms
            .store(now as i64 - local as i64, Ordering::Relaxed);
        Ok(now)
    }

    /// Take the batch's locks, run its jobs, append its events; returns the
    /// new journal head, if events were appended.
    async fn run_jobs(
        &self,
        now: u64,
        jobs: &mut [Batchable],
    ) -> Result<Option<u64>, tokio_postgres::Error> {
        let mut locks: Vec<i32> = jobs.iter().flat_map(|j| j.locks().to_vec()).collect();
        locks.sort_unstable();
        locks.dedup();
        if !locks.is_empty() {
            // The first key: the environment, so environments sharing a
            // database do not lock each other out.
            let space = lock_key(&self.setup.target.schema);
            let stmt = self
                .prepared
                .get(
                    &self.client,
                    "SELECT pg_advisory_xact_lock($1::int4, $2::int4)::text",
                )
                .await?;
            for key in locks {
                self.client.query(&stmt, &[&space, &key]).await?;
            }
        }
        let mut tx = PgTx {
            now,
            opts: &self.setup.opts,
            client: &self.client,
            prepared: &self.prepared,
            events: Vec::new(),
            broken: None,
        };
        for job in jobs.iter_mut() {
            let mark = tx.events.len();
            self.setup.tally.operations.fetch_add(1, Ordering::Relaxed);
            let ok = job.run(&mut tx).await;
            if let Some(e) = tx.broken.take() {
                return Err(e);
            }
            if !ok {
                tx.events.truncate(mark);
            }
        }
        let events = std::mem::take(&mut tx.events);
        if events.is_empty() {
            return Ok(None);
        }
        self.append(now, events).await.map(Some)
    }

    /// Number and insert the batch's events and notify listeners, in one
    /// statement; the head row stays locked until commit, so later batches
    /// (of any host) number after this one.
    async fn append(&self, now: u64, events: Vec<NewEvent>) -> Result<u64, tokio_postgres::Error> {
        let n = events.len() as i64;
        let mut agents = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut subjects = Vec::with_capacity(events.len());
        let mut details = Vec::with_capacity(events.len());
        for e in events {
            agents.push(e.agent);
            kinds.push(e.kind);
            subjects.push(e.subject);
            details.push(e.detail);
        }
        let stmt = self
            .prepared
            .get(
                &self.client,
                "WITH h AS (UPDATE journal_head SET seq = seq + $1 RETURNING seq),
                      ins AS (INSERT INTO events (seq, at, agent, kind, subject, detail)
                              SELECT h.seq - $1 + e.n, $2, e.agent, e.kind, e.subject, e.detail
                              FROM h, unnest($3::text[], $4::text[], $5::text[], $6::text[])
                                   WITH ORDINALITY AS e (agent, kind, subject, detail, n))
                 SELECT h.seq, pg_notify($7, h.seq::text)::text FROM h",
            )
            .await?;
        let row = self
            .client
            .query_one(
                &stmt,
                &[
                    &n,
                    &i(now),
                    &agents,
                    &kinds,
                    &subjects,
                    &details,
                    &self.channel,
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// A stable 32-bit key for `name` (FNV-1a): the same on every host.
pub(crate) fn lock_key(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}
