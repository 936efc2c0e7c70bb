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

use super::hot::{self, Hot};
use super::{Params, Prepared, channel, connect, listen, schema};
use crate::env::limits::i;
use crate::env::location::PgTarget;
use crate::env::store::Tally;
use crate::env::wake::{Touched, Wakes};
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
    wakes: &'c Wakes,
    /// What the batch's events touched: its waiters are woken after commit.
    touched: Touched,
    /// The database error that broke the transaction, if one did.
    broken: Option<tokio_postgres::Error>,
}

impl<'c> PgTx<'c> {
    /// The connection and a statement prepared on it, for statements sent
    /// together (pipelined): prepare every one first, then poll their
    /// queries together; they run in the order first polled.
    pub(crate) async fn prepare(
        &mut self,
        sql: &str,
    ) -> EnvResult<(&'c Client, tokio_postgres::Statement)> {
        match self.prepared.get(self.client, sql).await {
            Ok(stmt) => Ok((self.client, stmt)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Record that a statement failed, breaking the transaction.
    pub(crate) fn fail(&mut self, e: tokio_postgres::Error) -> EnvError {
        let err = EnvError::from(&e);
        self.broken.get_or_insert(e);
        err
    }

    /// Run a statement (prepared once per connection) and return its rows.
    pub(crate) async fn query(&mut self, sql: &str, params: Params<'_>) -> EnvResult<Vec<Row>> {
        let result = async {
            let stmt = self.prepared.get(self.client, sql).await?;
            self.client.query(&stmt, params).await
        }
        .await;
        result.map_err(|e| self.fail(e))
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

    /// Wake the waiters for `resources` after commit, for a change the
    /// journal does not record (places in line of an agent that ended).
    pub(crate) fn touch_resources(&mut self, resources: impl IntoIterator<Item = String>) {
        self.touched.resources(resources);
    }

    /// Append a change built by [`crate::env::events`].
    pub(crate) fn record(&mut self, agent: &str, c: crate::env::events::Change) {
        self.journal(agent, c.kind, &c.subject, c.detail);
    }

    /// Append an event to the journal (numbered when the batch ends).
    pub(crate) fn journal(
        &mut self,
        agent: &str,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) {
        self.touched
            .note(self.wakes, self.now, agent, kind, subject, &detail);
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
    /// The operation, if the hot path can run it together with its kind.
    fn hot(&mut self) -> Option<&mut Hot> {
        None
    }
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
    pub(crate) wakes: Arc<Wakes>,
    /// The server processes of this handle's writer connections: the
    /// listener knows their notifications for commits whose waiters the
    /// writer has woken already.
    pub(crate) own_backends: Arc<std::sync::Mutex<Vec<i32>>>,
    pub(crate) tally: Arc<Tally>,
    pub(crate) may_create: bool,
}

/// Why running a batch's operations stopped.
enum Failed {
    /// A statement failed: the transaction is broken.
    Db(tokio_postgres::Error),
    /// The database answered something the operations cannot use.
    Env(EnvError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Db(e)
    }
}

/// How a batch's transaction went wrong.
enum Broken {
    /// The database refused it and rolled it back: its operations may run again.
    RolledBack(EnvError),
    /// The outcome is unknown (the connection died): run nothing again.
    Unknown(EnvError),
}

/// One writer connection. A host has [`EnvOptions::writers`] of them, each
/// taking the next batch while the others commit theirs.
struct Writer {
    setup: Arc<Setup>,
    client: Client,
    prepared: Prepared,
    channel: String,
    /// Its connection's server process (see [`Setup::own_backends`]).
    backend: Option<i32>,
}

/// Connect, check (or create) the schema, report readiness on `ready`, then
/// commit batches until every sender is gone.
pub(crate) async fn run(
    setup: Setup,
    jobs: mpsc::UnboundedReceiver<Batchable>,
    ready: std::sync::mpsc::Sender<Result<(), OpenError>>,
) {
    let setup = Arc::new(setup);
    let writers = match start_writers(&setup).await {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (stop_listener, stopped) = watch::channel(false);
    let listener = tokio::spawn(listen::run(
        setup.target.clone(),
        setup.opts.clone(),
        setup.changed.clone(),
        setup.wakes.clone(),
        setup.own_backends.clone(),
        stopped,
    ));
    let _ = ready.send(Ok(()));

    let jobs = tokio::sync::Mutex::new(jobs);
    futures_util::future::join_all(writers.into_iter().map(|w| w.serve(&jobs))).await;
    let _ = stop_listener.send(true);
    let _ = listener.await;
}

/// Note `client`'s server process as one of this handle's writers.
/// Forgets `replaced`, the process of a connection that died: the server
/// may give its number to another host's connection.
async fn note_backend(setup: &Setup, client: &Client, replaced: Option<i32>) -> Option<i32> {
    let pid = match client.query_one("SELECT pg_backend_pid()", &[]).await {
        Ok(row) => Some(row.get(0)),
        Err(e) => {
            tracing::debug!("cannot read a writer's backend: {e}");
            None
        }
    };
    let mut own = setup.own_backends.lock().expect("backend list poisoned");
    own.retain(|p| Some(*p) != replaced);
    own.extend(pid);
    pid
}

/// Connect the writers, the first checking (or creating) the schema and
/// reading where the journal stands.
async fn start_writers(setup: &Arc<Setup>) -> Result<Vec<Writer>, OpenError> {
    let rt = Handle::current();
    let mut writers = Vec::new();
    for n in 0..setup.opts.writers.max(1) {
        let client = connect::connect(&setup.target, &setup.shown, &setup.opts, &rt).await?;
        let backend = note_backend(setup, &client, None).await;
        if n == 0 {
            schema::prepare(&client, &setup.target, &setup.shown, setup.may_create).await?;
            let head = client
                .query_one("SELECT seq FROM journal_head", &[])
                .await
                .map_err(|e| OpenError::Other {
                    path: setup.shown.clone().into(),
                    detail: format!("cannot read the journal: {e}"),
                })?;
            let head = head.get::<_, i64>(0) as u64;
            setup.changed.send_modify(|v| *v = (*v).max(head));
        }
        writers.push(Writer {
            channel: channel(&setup.target.schema),
            setup: setup.clone(),
            client,
            prepared: Prepared::default(),
            backend,
        });
    }
    Ok(writers)
}

impl Writer {
    /// Take the next batch whenever no other writer is taking one, and
    /// commit it; until every sender is gone.
    async fn serve(mut self, jobs: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Batchable>>) {
        let mut batch: Vec<Batchable> = Vec::with_capacity(self.setup.opts.max_batch);
        loop {
            {
                let mut jobs = jobs.lock().await;
                let Some(first) = jobs.recv().await else {
                    return;
                };
                batch.push(first);
                while batch.len() < self.setup.opts.max_batch {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            self.commit_batch(&mut batch).await;
        }
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
                self.backend = note_backend(s, &c, self.backend).await;
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
        let (events, touched) = match self.run_jobs(now, jobs).await {
            Ok(done) => done,
            Err(broken) => {
                if !self.client.is_closed() {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                }
                return Err(broken);
            }
        };
        // The events and the COMMIT go out together. Should the append fail,
        // the server answers the COMMIT of the failed transaction with a
        // rollback, so nothing of the batch is kept.
        let (appended, committed) = if events.is_empty() {
            (Ok(None), self.client.batch_execute("COMMIT").await)
        } else {
            let append = self.append_statement().await.map_err(|e| self.broken(e))?;
            let (a, c) = futures_util::future::join(
                self.append(&append, now, events),
                self.client.batch_execute("COMMIT"),
            )
            .await;
            (a.map(Some), c)
        };
        let lost = |e: &tokio_postgres::Error| e.is_closed() || self.client.is_closed();
        let failed = match (&appended, &committed) {
            (Err(e), _) | (Ok(_), Err(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = failed {
            return Err(if lost(e) {
                Broken::Unknown(EnvError::Unavailable(
                    "the connection to PostgreSQL was lost while committing: the operation may \
                     or may not have taken effect; look before trying again"
                        .into(),
                ))
            } else {
                Broken::RolledBack(EnvError::from(e))
            });
        }
        self.setup.tally.commits.fetch_add(1, Ordering::Relaxed);
        self.setup.wakes.dispatch(touched);
        if let Ok(Some(head)) = appended {
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

    /// Take the batch's locks and run its jobs; returns the events they made.
    async fn run_jobs(
        &self,
        now: u64,
        jobs: &mut [Batchable],
    ) -> Result<(Vec<NewEvent>, Touched), Broken> {
        self.run_jobs_inner(now, jobs).await.map_err(|e| match e {
            Failed::Db(e) => self.broken(e),
            Failed::Env(e) => Broken::RolledBack(e),
        })
    }

    async fn run_jobs_inner(
        &self,
        now: u64,
        jobs: &mut [Batchable],
    ) -> Result<(Vec<NewEvent>, Touched), Failed> {
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
            wakes: &self.setup.wakes,
            touched: Touched::default(),
            broken: None,
        };
        self.setup
            .tally
            .operations
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let hot = hot::run_all(&mut tx, jobs).await;
        if let Some(e) = tx.broken.take() {
            return Err(Failed::Db(e));
        }
        // The hot path fails on its own only when the database answered
        // something impossible; nothing of the batch may be kept then.
        hot.map_err(Failed::Env)?;
        for job in jobs.iter_mut() {
            if job.hot().is_some() {
                continue;
            }
            let mark = tx.events.len();
            let ok = job.run(&mut tx).await;
            if let Some(e) = tx.broken.take() {
                return Err(Failed::Db(e));
            }
            if !ok {
                tx.events.truncate(mark);
            }
        }
        Ok((
            std::mem::take(&mut tx.events),
            std::mem::take(&mut tx.touched),
        ))
    }

    /// The statement that numbers and inserts a batch's events and notifies
    /// listeners; the head row stays locked until commit, so later batches
    /// (of any host) number after this one.
    async fn append_statement(&self) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        self.prepared
            .get(
                &self.client,
                "WITH h AS (UPDATE journal_head SET seq = seq + $1 RETURNING seq),
                      ins AS (INSERT INTO events (seq, at, agent, kind, subject, detail)
                              SELECT h.seq - $1 + e.n, $2, e.agent, e.kind, e.subject, e.detail
                              FROM h, unnest($3::text[], $4::text[], $5::text[], $6::text[])
                                   WITH ORDINALITY AS e (agent, kind, subject, detail, n))
                 SELECT h.seq, pg_notify($7, h.seq::text)::text FROM h",
            )
            .await
    }

    /// Append `events` with `stmt` (see [`Writer::append_statement`]);
    /// returns the new journal head.
    async fn append(
        &self,
        stmt: &tokio_postgres::Statement,
        now: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, tokio_postgres::Error> {
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
        let row = self
            .client
            .query_one(
                stmt,
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
