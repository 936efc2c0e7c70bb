//! The environment in a PostgreSQL schema, for hosts on several machines.
//!
//! Every host connects on its own: one writer connection with group commit
//! ([`writer`]), a few read connections, and one listener that turns other
//! hosts' commits into the same in-process notification the writer sends
//! ([`listen`]). All their connection tasks run on one thread of the
//! backend's own, so the store works from any tokio runtime and from none.
//!
//! The database decides: its clock (read once per transaction) is the only
//! clock behind expiry, delays and decay; fencing tokens come from a
//! sequence; the journal's sequence numbers are handed out last in each
//! transaction from a one-row head, so they follow commit order without gaps.

mod agents;
mod connect;
mod copy;
mod hot;
mod journal;
mod learnings;
mod listen;
mod read;
mod reservations;
mod schema;
mod signals;
mod stats;
mod tasks;
mod values;
mod workspace;
mod writer;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::env::location::PgTarget;
use crate::env::store::Tally;
use crate::env::wake::Wakes;
use crate::env::{Clock, EnvError, EnvOptions, EnvResult, OpenError, SystemClock};

pub(crate) use writer::PgTx;

/// Parameters of a statement.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// An environment in a PostgreSQL schema.
pub(crate) struct PgStore {
    opts: EnvOptions,
    schema: String,
    /// The clock tests inject; `None`: the database's clock decides.
    clock: Option<Arc<dyn Clock>>,
    /// The database clock minus this host's, in ms, as last measured.
    offset_ms: Arc<AtomicI64>,
    jobs: Mutex<Option<mpsc::UnboundedSender<writer::Batchable>>>,
    readers: read::Readers,
    changed: watch::Sender<u64>,
    wakes: Arc<Wakes>,
    tally: Arc<Tally>,
    /// The backend's thread: its runtime drives every connection.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PgStore {
    /// Connect to the environment at `url`, creating its schema if `may_create`.
    ///
    /// A wrong URL, a refused login, a missing database, a schema that belongs
    /// to another application or to a newer wawe: each is refused with what
    /// to do, and nothing is created or changed.
    pub(crate) fn open(
        url: &str,
        opts: EnvOptions,
        clock: Option<Arc<dyn Clock>>,
        may_create: bool,
    ) -> Result<PgStore, OpenError> {
        let target = PgTarget::parse(url)?;
        let shown = crate::env::EnvLocation::Postgres(url.to_owned()).to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OpenError::Other {
                path: shown.clone().into(),
                detail: format!("cannot start the database thread: {e}"),
            })?;
        let handle = rt.handle().clone();
        let (changed, _) = watch::channel(0u64);
        let wakes = Arc::new(Wakes::default());
        let tally = Arc::new(Tally::default());
        let offset_ms = Arc::new(AtomicI64::new(0));
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let setup = writer::Setup {
            target: target.clone(),
            shown: shown.clone(),
            opts: opts.clone(),
            clock: clock.clone(),
            offset_ms: offset_ms.clone(),
            changed: changed.clone(),
            wakes: wakes.clone(),
            own_backends: Default::default(),
            tally: tally.clone(),
            may_create,
        };
        let thread = std::thread::Builder::new()
            .name("wawe-env-postgres".into())
            .spawn(move || rt.block_on(writer::run(setup, jobs_rx, ready_tx)))
            .map_err(|e| OpenError::Other {
                path: shown.clone().into(),
                detail: format!("cannot start the database thread: {e}"),
            })?;
        let readers = match ready_rx.recv() {
            Ok(Ok(())) => read::Readers::new(target.clone(), shown.clone(), handle, opts.clone()),
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(OpenError::Other {
                    path: shown.into(),
                    detail: "the database thread stopped while connecting".into(),
                });
            }
        };
        Ok(PgStore {
            schema: target.schema.clone(),
            opts,
            clock,
            offset_ms,
            jobs: Mutex::new(Some(jobs_tx)),
            readers,
            changed,
            wakes,
            tally,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn options(&self) -> &EnvOptions {
        &self.opts
    }

    /// The injected clock, else this host's clock moved by the database's
    /// offset (for local timers only; the database decides in SQL).
    pub(crate) fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(c) => c.now_ms(),
            None => {
                let local = SystemClock.now_ms() as i64;
                (local + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
            }
        }
    }

    /// The time to hand statements that read it: the injected clock's, or
    /// `None` for the database's own.
    pub(crate) fn injected_now(&self) -> Option<i64> {
        self.clock.as_ref().map(|c| c.now_ms() as i64)
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The waiters of this handle, woken by what commits touch.
    pub(crate) fn wakes(&self) -> &Arc<Wakes> {
        &self.wakes
    }

    /// PostgreSQL checkpoints on its own.
    pub(crate) async fn checkpoint(&self) -> EnvResult<()> {
        Ok(())
    }

    /// Run `op` in the writer's next batch; resolves after its commit.
    pub(crate) async fn write<T, F>(&self, op: F) -> EnvResult<T>
    where
        T: Send + 'static,
        F: for<'t, 'c> AsyncFn(&'t mut PgTx<'c>) -> EnvResult<T> + Send + 'static,
    {
        self.write_locking(Vec::new(), op).await
    }

    /// Like [`PgStore::write`], taking transaction-scoped advisory locks on
    /// `locks` at the start of the batch (every batch takes its locks in one
    /// sorted sweep before anything else, so batches cannot deadlock on them).
    pub(crate) async fn write_locking<T, F>(&self, locks: Vec<i32>, op: F) -> EnvResult<T>
    where
        T: Send + 'static,
        F: for<'t, 'c> AsyncFn(&'t mut PgTx<'c>) -> EnvResult<T> + Send + 'static,
    {
        let (job, answer) = writer::job(locks, op);
        self.send_and_wait(job, answer).await
    }

    /// Queue `job` for the writer's next batch and wait for its answer.
    pub(crate) async fn send_and_wait<T>(
        &self,
        job: writer::Batchable,
        answer: tokio::sync::oneshot::Receiver<EnvResult<T>>,
    ) -> EnvResult<T> {
        self.send(job)?;
        answer
            .await
            .map_err(|_| EnvError::Unavailable("the environment writer stopped".into()))?
    }

    /// Queue `op` without waiting for its answer (for clean-up from `Drop`).
    pub(crate) fn send_detached<F>(&self, op: F)
    where
        F: for<'t, 'c> AsyncFn(&'t mut PgTx<'c>) -> EnvResult<()> + Send + 'static,
    {
        let (job, _answer) = writer::job(Vec::new(), op);
        let _ = self.send(job);
    }

    fn send(&self, job: writer::Batchable) -> EnvResult<()> {
        let jobs = self.jobs.lock().expect("writer handle poisoned");
        let sender = jobs
            .as_ref()
            .ok_or_else(|| EnvError::Unavailable("the environment is closed".into()))?;
        sender
            .send(job)
            .map_err(|_| EnvError::Unavailable("the environment writer stopped".into()))
    }

    /// Rows of one read statement (a single statement reads one snapshot).
    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> EnvResult<Vec<Row>> {
        self.readers.query(sql, params).await
    }

    /// A connection of its own, for a read that spans several statements.
    pub(crate) async fn dedicated(&self) -> EnvResult<Client> {
        self.readers.dedicated().await
    }

    /// The one row of a read statement that always returns one.
    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> EnvResult<Row> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                EnvError::Unavailable(format!("the database returned no row for: {sql}"))
            })
    }

    /// Drop the environment's schema with everything in it, then close.
    pub(crate) async fn destroy(&self) -> EnvResult<()> {
        let drop_schema = format!("DROP SCHEMA {} CASCADE", self.schema);
        self.write(async move |tx| tx.query(&drop_schema, &[]).await.map(drop))
            .await?;
        self.close();
        Ok(())
    }

    /// Stop the writer after its last batch, then the backend's thread.
    pub(crate) fn close(&self) {
        self.jobs.lock().expect("writer handle poisoned").take();
        let thread = self.thread.lock().expect("thread handle poisoned").take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// A statement cache for one connection: each statement is prepared once.
#[derive(Default)]
pub(crate) struct Prepared(Mutex<std::collections::HashMap<String, Statement>>);

impl Prepared {
    pub(crate) async fn get(
        &self,
        client: &Client,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.0.lock().expect("statement cache poisoned").get(sql) {
            return Ok(s.clone());
        }
        let stmt = client.prepare(sql).await?;
        self.0
            .lock()
            .expect("statement cache poisoned")
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// An error of the database, as environment callers see it.
pub(crate) fn db_error(e: &tokio_postgres::Error) -> EnvError {
    if e.is_closed() {
        return EnvError::Unavailable(
            "the connection to PostgreSQL was lost; the call may be retried".into(),
        );
    }
    match e.as_db_error() {
        Some(db) => EnvError::Unavailable(format!("PostgreSQL: {}", db.message())),
        None => EnvError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

impl From<tokio_postgres::Error> for EnvError {
    fn from(e: tokio_postgres::Error) -> Self {
        db_error(&e)
    }
}

/// The NOTIFY channel of the environment in `schema`.
pub(crate) fn channel(schema: &str) -> String {
    format!("wawe_{schema}")
}
