//! The embedded backend: the environment in one SQLite file.
//!
//! Writes go through one writer connection on its own thread with group
//! commit ([`writer`]); reads use a small pool of separate connections (WAL
//! lets them run beside the writer). A change watcher turns commits made by
//! other processes into the same in-process notification the writer sends, so
//! waits wake without re-running their queries on a timer.

mod agents;
mod checkpointer;
mod journal;
mod learnings;
mod open;
mod reservations;
mod schema;
mod signals;
mod stats;
mod tasks;
mod values;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::watch;
use tokio::time::Instant;

pub use agents::Swept;
pub use schema::SCHEMA_VERSION;

use crate::env::{Clock, EnvError, EnvOptions, EnvResult, OpenError, SystemClock};

const MAX_IDLE_READERS: usize = 8;

/// An open environment backed by a SQLite file. Cheap to clone; clones share
/// the writer, the readers and the change notifications.
#[derive(Clone)]
pub struct Env {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    opts: EnvOptions,
    clock: Arc<dyn Clock>,
    jobs: Mutex<Option<writer::JobSender>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Ends after the writer (which holds its only poke handle).
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    changed: watch::Sender<u64>,
    /// What the writer did, for benchmarks and diagnostics.
    tally: Arc<writer::Tally>,
    stop_watcher: Arc<AtomicBool>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// The log size, in pages, at which the writer checkpoints inline (a
/// backstop: the checkpoint thread normally keeps the log shorter).
const WRITER_CHECKPOINT_PAGES: u32 = 4000;

/// What a write operation sees: the batch's transaction and its time.
pub(crate) struct Tx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) now: u64,
    pub(crate) opts: &'a EnvOptions,
    last_seq: &'a mut u64,
}

impl Tx<'_> {
    /// Append an event to the journal; returns its sequence number.
    pub(crate) fn journal(
        &mut self,
        agent: &str,
        kind: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> EnvResult<u64> {
        let seq = journal::append(self.conn, self.now, agent, kind, subject, &detail)?;
        *self.last_seq = seq;
        Ok(seq)
    }

    /// Draw the next fencing token from the environment-wide counter.
    pub(crate) fn next_token(&self) -> EnvResult<u64> {
        // Two statements rather than `RETURNING` (see `journal::append`).
        self.conn
            .prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'fence'")?
            .execute([])?;
        let token: i64 = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'fence'")?
            .query_row([], |r| r.get(0))?;
        Ok(token as u64)
    }
}

impl Env {
    /// Open the environment at `path`, creating it if the file does not exist.
    ///
    /// A file that is not a SQLite database, belongs to another application,
    /// comes from a newer wawe or is corrupt is refused and left untouched.
    pub fn open(path: impl AsRef<Path>, opts: EnvOptions) -> Result<Env, OpenError> {
        Self::open_with_clock(path, opts, Arc::new(SystemClock))
    }

    /// Like [`Env::open`], reading time from `clock` (tests use a [`crate::env::ManualClock`]).
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        opts: EnvOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Env, OpenError> {
        Self::open_inner(path.as_ref(), opts, clock, true)
    }

    /// Open an environment that already exists; a missing or empty file is
    /// [`OpenError::Missing`] and nothing is created (for tools that only look).
    pub fn open_existing(path: impl AsRef<Path>, opts: EnvOptions) -> Result<Env, OpenError> {
        Self::open_inner(path.as_ref(), opts, Arc::new(SystemClock), false)
    }

    fn open_inner(
        path: &Path,
        opts: EnvOptions,
        clock: Arc<dyn Clock>,
        may_create: bool,
    ) -> Result<Env, OpenError> {
        let path = path.to_path_buf();
        let create = open::inspect(&path, &opts)?;
        if create && !may_create {
            return Err(OpenError::Missing { path });
        }
        let conn = open::connect(&path, &opts)?;
        if create {
            open::create_schema(&conn, &path, &opts)?;
        }
        let (changed, _) = watch::channel(0u64);
        let (tx, rx) = std::sync::mpsc::channel();
        let tally = Arc::new(writer::Tally::default());
        let (poke, pokes) = checkpointer::channel();
        // Every connection is open before any thread starts, so a failed
        // open leaves nothing running.
        let checkpoint_conn = open::connect(&path, &opts)?;
        let watcher_conn = open::connect(&path, &opts)?;
        // The checkpoint thread does the copying; the writer's own automatic
        // checkpoint stays as a backstop with a high threshold. The log only
        // starts over when a checkpoint has caught up with it as a write
        // begins, which a thread trailing a writer that never pauses may never
        // do; the writer's checkpoint does, and finds little left to copy.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}"
        ))
        .map_err(|e| OpenError::Other {
            path: path.clone(),
            detail: format!("cannot configure the writer: {e}"),
        })?;
        let checkpointer = std::thread::Builder::new()
            .name("wawe-env-checkpoint".into())
            .spawn(move || checkpointer::run(checkpoint_conn, pokes))
            .map_err(|e| OpenError::Other {
                path: path.clone(),
                detail: format!("cannot start the checkpoint thread: {e}"),
            })?;
        let writer = {
            let tally = tally.clone();
            let clock = clock.clone();
            let opts = opts.clone();
            let changed = changed.clone();
            std::thread::Builder::new()
                .name("wawe-env-writer".into())
                .spawn(move || writer::run(conn, rx, clock, opts, changed, tally, poke))
                .map_err(|e| OpenError::Other {
                    path: path.clone(),
                    detail: format!("cannot start the writer thread: {e}"),
                })?
        };
        let stop_watcher = Arc::new(AtomicBool::new(false));
        let watcher = {
            let changed = changed.clone();
            let stop = stop_watcher.clone();
            let every = Duration::from_millis(opts.change_check_interval_ms.max(1));
            std::thread::Builder::new()
                .name("wawe-env-watch".into())
                .spawn(move || journal::watch_other_processes(watcher_conn, changed, stop, every))
                .map_err(|e| OpenError::Other {
                    path: path.clone(),
                    detail: format!("cannot start the change watcher: {e}"),
                })?
        };
        Ok(Env {
            inner: Arc::new(Inner {
                path,
                opts,
                clock,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
                checkpointer: Mutex::new(Some(checkpointer)),
                readers: Mutex::new(Vec::new()),
                changed,
                tally,
                stop_watcher,
                watcher: Mutex::new(Some(watcher)),
            }),
        })
    }

    /// The file this environment lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &EnvOptions {
        &self.inner.opts
    }

    /// The environment's current time (ms since the epoch).
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// How many transactions this environment's writer has committed: with
    /// group commit, fewer than the write operations it ran.
    pub fn commits(&self) -> u64 {
        self.inner.tally.commits.load(Ordering::Relaxed)
    }

    /// How many write operations this environment's writer has run, kept
    /// or rolled back (not those refused unrun because their batch broke).
    pub fn operations(&self) -> u64 {
        self.inner.tally.operations.load(Ordering::Relaxed)
    }

    /// Run `op` in the writer's next batch; resolves after its commit.
    pub(crate) async fn write<T, F>(&self, op: F) -> EnvResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> EnvResult<T> + Send + 'static,
    {
        let (job, answer) = writer::job(op);
        {
            let jobs = self.inner.jobs.lock().expect("writer handle poisoned");
            let sender = jobs
                .as_ref()
                .ok_or_else(|| EnvError::Unavailable("the environment is closed".into()))?;
            sender
                .send(job)
                .map_err(|_| EnvError::Unavailable("the environment writer stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| EnvError::Unavailable("the environment writer stopped".into()))?
    }

    /// Copy committed pages from the write-ahead log into the database
    /// without waiting for readers (`PASSIVE`); with the journal size limit
    /// set on every connection, this keeps the WAL from growing without bound.
    pub fn checkpoint(&self) -> EnvResult<()> {
        let conn = self.reader()?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.give_back(conn);
        Ok(())
    }

    fn reader(&self) -> EnvResult<Connection> {
        let pooled = self
            .inner
            .readers
            .lock()
            .expect("reader pool poisoned")
            .pop();
        match pooled {
            Some(c) => Ok(c),
            None => {
                let c = open::connect(&self.inner.path, &self.inner.opts)
                    .map_err(|e| EnvError::Unavailable(e.to_string()))?;
                c.execute_batch("PRAGMA query_only = ON")?;
                Ok(c)
            }
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.inner.readers.lock().expect("reader pool poisoned");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
    }

    /// Queue `op` for the writer's next batch without waiting for its answer
    /// (for clean-up from `Drop`, which cannot wait).
    pub(crate) fn send_detached<F>(&self, op: F)
    where
        F: FnOnce(&mut Tx<'_>) -> EnvResult<()> + Send + 'static,
    {
        let (job, _answer) = writer::job(op);
        if let Some(sender) = self
            .inner
            .jobs
            .lock()
            .expect("writer handle poisoned")
            .as_ref()
        {
            let _ = sender.send(job);
        }
    }

    /// Run `op` on a read connection inside one read transaction.
    pub(crate) fn read<T>(
        &self,
        op: impl FnOnce(&Connection, u64) -> EnvResult<T>,
    ) -> EnvResult<T> {
        let conn = self.reader()?;
        conn.execute_batch("BEGIN")?;
        let result = op(&conn, self.now_ms());
        let end = conn.execute_batch("COMMIT");
        if end.is_ok() {
            self.give_back(conn);
        }
        let value = result?;
        end?;
        Ok(value)
    }

    /// A receiver that sees the newest journal sequence number after every
    /// commit, from this process or another one sharing the file.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Sleep until the environment changes after `rx` last looked, or `until`.
    /// Returns false when `until` came first.
    pub(crate) async fn changed_before(rx: &mut watch::Receiver<u64>, until: Instant) -> bool {
        matches!(
            tokio::time::timeout_at(until, rx.changed()).await,
            Ok(Ok(()))
        )
    }

    /// The real instant at which the environment clock will read `at_ms`.
    pub(crate) fn instant_at(&self, at_ms: u64) -> Instant {
        let ms = at_ms.saturating_sub(self.now_ms()).min(MAX_WAIT_MS);
        Instant::now() + Duration::from_millis(ms)
    }

    /// The instant a wait of `wait_ms` (capped at [`MAX_WAIT_MS`]) ends.
    pub(crate) fn wait_until(wait_ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS))
    }

    /// Flush outstanding writes and stop the writer; later calls fail with
    /// `Unavailable`. Dropping the last clone closes too.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn close(&self) {
        self.jobs.lock().expect("writer handle poisoned").take();
        if let Some(handle) = self.writer.lock().expect("writer handle poisoned").take() {
            let _ = handle.join();
        }
        let checkpointer = self
            .checkpointer
            .lock()
            .expect("checkpointer poisoned")
            .take();
        if let Some(handle) = checkpointer {
            let _ = handle.join();
        }
        self.stop_watcher.store(true, Ordering::Relaxed);
        if let Some(handle) = self.watcher.lock().expect("watcher handle poisoned").take() {
            let _ = handle.join();
        }
        self.readers.lock().expect("reader pool poisoned").clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl From<rusqlite::Error> for EnvError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
                EnvError::Unavailable("the database is locked by another process".into())
            }
            Some(ErrorCode::DiskFull) => EnvError::Unavailable(
                "the disk is full (or a file size limit was reached): nothing was changed; \
                 check free space and try again"
                    .into(),
            ),
            // A failed write, say past a file size limit (a full disk is
            // `DiskFull` above): the transaction was rolled back.
            Some(ErrorCode::SystemIoFailure) => EnvError::Unavailable(
                "a disk I/O error: the disk may be full or failing; the operation did not \
                 complete: check free space and the disk, then try again"
                    .into(),
            ),
            Some(ErrorCode::ReadOnly) => EnvError::Unavailable(
                "the environment file or its directory is read-only: nothing was changed; \
                 make both writable for this user"
                    .into(),
            ),
            _ => EnvError::Unavailable(e.to_string()),
        }
    }
}

/// Convert a stored integer to u64 (stored values are never negative).
pub(crate) fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// Convert a u64 for storage, saturating at i64::MAX.
pub(crate) fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The longest any wait lasts (reserve, claim, events): an hour.
pub(crate) const MAX_WAIT_MS: u64 = 3_600_000;

/// The longest ttl of a lease or claim: a day. Longer holds are renewed.
pub(crate) const MAX_TTL_MS: u64 = 86_400_000;

/// Check a lease or claim ttl: above 0 and at most [`MAX_TTL_MS`].
pub(crate) fn check_ttl(what: &str, ttl_ms: u64) -> EnvResult<()> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(EnvError::invalid(format!(
            "a {what} needs a ttl between 1 ms and {MAX_TTL_MS} ms (a day), not {ttl_ms} ms"
        )));
    }
    Ok(())
}

/// Check a name (queue, topic, trail, key) against the length limit.
pub(crate) fn check_name(what: &str, name: &str, opts: &EnvOptions) -> EnvResult<()> {
    if name.is_empty() {
        return Err(EnvError::invalid(format!("the {what} must not be empty")));
    }
    if name.len() > opts.max_name_bytes {
        return Err(EnvError::TooLarge {
            what: what.into(),
            limit: opts.max_name_bytes as u64,
            actual: name.len() as u64,
        });
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(EnvError::invalid(format!(
            "the {what} {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Check a payload (body, value, result) against the size limit.
pub(crate) fn check_payload(what: &str, data: &str, opts: &EnvOptions) -> EnvResult<()> {
    if data.len() > opts.max_payload_bytes {
        return Err(EnvError::TooLarge {
            what: what.into(),
            limit: opts.max_payload_bytes as u64,
            actual: data.len() as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fails unless every statement in `sqls` runs without scanning a table
    /// and without sorting into a temporary b-tree (`EXPLAIN QUERY PLAN`, on a
    /// fresh environment, where SQLite has no statistics to lean on).
    pub(crate) fn assert_no_scan_or_sort(sqls: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let env = Env::open(&path, EnvOptions::default()).unwrap();
        let conn = open::connect(&path, env.options()).unwrap();
        for sql in sqls {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let params = stmt.parameter_count();
            let detail: Vec<String> = stmt
                .query_map(
                    rusqlite::params_from_iter(std::iter::repeat_n(0, params)),
                    |r| r.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for line in &detail {
                assert!(
                    !line.starts_with("SCAN") && !line.contains("TEMP B-TREE"),
                    "`{sql}` plans `{line}`; the whole plan: {detail:#?}"
                );
            }
        }
    }
}
