//! The embedded backend: the environment in one SQLite file.
//!
//! Writes go through one writer connection on its own thread with group
//! commit ([`writer`]); reads use a small pool of separate connections (WAL
//! lets them run beside the writer). A change watcher turns commits made by
//! other processes into the same in-process notification the writer sends, so
//! waits wake without re-running their queries on a timer.

mod agents;
mod checkpointer;
mod copy;
mod journal;
mod learnings;
mod open;
mod reservations;
mod schema;
mod signals;
mod stats;
mod tasks;
mod values;
mod workspace;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::watch;

pub use schema::SCHEMA_VERSION;

use crate::env::store::Tally;
use crate::env::wake::{Touched, Wakes};
use crate::env::{Clock, EnvError, EnvOptions, EnvResult, OpenError};

/// Reads running at once (each on a connection of its own, kept for the
/// next): more would only open and close connections, each open parsing the
/// schema again, for no more parallelism than the machine has.
const MAX_READERS: usize = 8;

/// An environment in a SQLite file: the writer thread, the readers and the
/// change notifications.
pub(crate) struct SqliteStore {
    path: PathBuf,
    opts: EnvOptions,
    clock: Arc<dyn Clock>,
    jobs: Mutex<Option<writer::JobSender>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Ends after the writer (which holds its only poke handle).
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read running (see [`MAX_READERS`]).
    reading: tokio::sync::Semaphore,
    changed: watch::Sender<u64>,
    wakes: Arc<Wakes>,
    /// What the writer did, for benchmarks and diagnostics.
    tally: Arc<Tally>,
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
    wakes: &'a Wakes,
    /// What the batch's events touched: its waiters are woken after commit.
    touched: &'a mut Touched,
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
        self.touched.numbered(seq);
        self.touched
            .note(self.wakes, self.now, agent, kind, subject, &detail);
        Ok(seq)
    }

    /// Wake the waiters for `resources` after commit, for a change the
    /// journal does not record (places in line of an agent that ended).
    pub(crate) fn touch_resources(&mut self, resources: impl IntoIterator<Item = String>) {
        self.touched.resources(resources);
    }

    /// Append a change built by [`crate::env::events`].
    pub(crate) fn record(&mut self, agent: &str, c: crate::env::events::Change) -> EnvResult<u64> {
        self.journal(agent, c.kind, &c.subject, c.detail)
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

impl SqliteStore {
    /// Open (or, when `may_create`, create) the environment in the file at `path`.
    ///
    /// A file that is not a SQLite database, belongs to another application,
    /// comes from a newer wawe or is corrupt is refused and left untouched.
    pub(crate) fn open(
        path: &Path,
        opts: EnvOptions,
        clock: Arc<dyn Clock>,
        may_create: bool,
    ) -> Result<SqliteStore, OpenError> {
        let path = path.to_path_buf();
        let create = open::inspect(&path, &opts)?;
        if create && !may_create {
            return Err(OpenError::Missing { path });
        }
        let conn = open::connect(&path, &opts)?;
        if create {
            open::create_schema(&conn, &path, &opts)?;
        } else {
            open::migrate(&conn, &path, &opts)?;
        }
        let (changed, _) = watch::channel(0u64);
        let wakes = Arc::new(Wakes::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let tally = Arc::new(Tally::default());
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
            let wakes = wakes.clone();
            std::thread::Builder::new()
                .name("wawe-env-writer".into())
                .spawn(move || writer::run(conn, rx, clock, opts, changed, wakes, tally, poke))
                .map_err(|e| OpenError::Other {
                    path: path.clone(),
                    detail: format!("cannot start the writer thread: {e}"),
                })?
        };
        let stop_watcher = Arc::new(AtomicBool::new(false));
        let watcher = {
            let changed = changed.clone();
            let wakes = wakes.clone();
            let stop = stop_watcher.clone();
            let every = Duration::from_millis(opts.change_check_interval_ms.max(1));
            std::thread::Builder::new()
                .name("wawe-env-watch".into())
                .spawn(move || {
                    journal::watch_other_processes(watcher_conn, changed, &wakes, stop, every)
                })
                .map_err(|e| OpenError::Other {
                    path: path.clone(),
                    detail: format!("cannot start the change watcher: {e}"),
                })?
        };
        Ok(SqliteStore {
            path,
            opts,
            clock,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            readers: Mutex::new(Vec::new()),
            reading: tokio::sync::Semaphore::new(MAX_READERS),
            changed,
            wakes,
            tally,
            stop_watcher,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    pub(crate) fn options(&self) -> &EnvOptions {
        &self.opts
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Run `op` in the writer's next batch; resolves after its commit.
    pub(crate) async fn write<T, F>(&self, op: F) -> EnvResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> EnvResult<T> + Send + 'static,
    {
        let (job, answer) = writer::job(op);
        {
            let jobs = self.jobs.lock().expect("writer handle poisoned");
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
    pub(crate) async fn checkpoint(&self) -> EnvResult<()> {
        let conn = self.reader()?;
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        self.give_back(conn);
        Ok(())
    }

    fn reader(&self) -> EnvResult<Connection> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        match pooled {
            Some(c) => Ok(c),
            None => open_reader(&self.path, &self.opts),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.readers.lock().expect("reader pool poisoned");
        if pool.len() < MAX_READERS {
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
        if let Some(sender) = self.jobs.lock().expect("writer handle poisoned").as_ref() {
            let _ = sender.send(job);
        }
    }

    /// Run `op` on a read connection inside one read transaction, on
    /// tokio's blocking pool: a long read never holds up the async workers
    /// that wake waiters and answer other calls.
    pub(crate) async fn read<T, F>(&self, op: F) -> EnvResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, u64) -> EnvResult<T> + Send + 'static,
    {
        let _permit = self
            .reading
            .acquire()
            .await
            .map_err(|_| EnvError::Unavailable("the environment is closed".into()))?;
        // A pooled connection, or what it takes to open one.
        let reader = match self.readers.lock().expect("reader pool poisoned").pop() {
            Some(c) => Ok(c),
            None => Err((self.path.clone(), self.opts.clone())),
        };
        let now = self.now_ms();
        let (conn, value) = tokio::task::spawn_blocking(move || {
            let conn = match reader.or_else(|(path, opts)| open_reader(&path, &opts)) {
                Ok(c) => c,
                Err(e) => return (None, Err(e)),
            };
            if let Err(e) = conn.execute_batch("BEGIN") {
                return (None, Err(e.into()));
            }
            let result = op(&conn, now);
            match conn.execute_batch("COMMIT") {
                Ok(()) => (Some(conn), result),
                Err(e) => (None, result.and(Err(e.into()))),
            }
        })
        .await
        .map_err(|e| EnvError::Unavailable(format!("a read was cut off: {e}")))?;
        if let Some(conn) = conn {
            self.give_back(conn);
        }
        value
    }

    /// Close, then delete the file and its write-ahead log.
    pub(crate) async fn destroy(&self) -> EnvResult<()> {
        self.close();
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(EnvError::Unavailable(format!(
                        "cannot delete {}: {e}",
                        PathBuf::from(file).display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// A receiver that sees the newest journal sequence number after every
    /// commit, from this process or another one sharing the file.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The waiters of this handle, woken by what commits touch.
    pub(crate) fn wakes(&self) -> &Arc<Wakes> {
        &self.wakes
    }

    /// Flush outstanding writes and stop the writer; later calls fail with
    /// `Unavailable`.
    pub(crate) fn close(&self) {
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

/// A new read-only connection to the file at `path`.
fn open_reader(path: &Path, opts: &EnvOptions) -> EnvResult<Connection> {
    let c = open::connect(path, opts).map_err(|e| EnvError::Unavailable(e.to_string()))?;
    c.execute_batch("PRAGMA query_only = ON")?;
    Ok(c)
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fails unless every statement in `sqls` runs without scanning a table
    /// and without sorting into a temporary b-tree (`EXPLAIN QUERY PLAN`, on a
    /// fresh environment, where SQLite has no statistics to lean on).
    pub(crate) fn assert_no_scan_or_sort(sqls: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let env = crate::env::Env::open(&path, EnvOptions::default()).unwrap();
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
