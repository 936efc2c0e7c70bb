//! The environment: the shared state agents coordinate through.
//!
//! Reservations (leases with fencing tokens), task queues, learnings, decaying
//! signals, versioned values and a journal of every change. Every operation is
//! one transaction, attributed to the caller's host-assigned [`AgentId`], and
//! appends what it changed to the journal in that same transaction.
//!
//! [`Env`] is the one type everything above uses. Behind it sits a backend:
//! SQLite, the embedded default (one file, one machine), or PostgreSQL (one
//! database shared by hosts on many machines). Argument checks, the waiting
//! loops and the ranking and decay arithmetic live here, written once; each
//! backend (`sqlite/`, `postgres/`) holds only its storage. Nothing here
//! knows about WebAssembly.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wawe::env::{AgentId, Env, EnvOptions, PushOptions};
//!
//! // A file path, or a URL such as "postgres://127.0.0.1/db?schema=team_a".
//! let env = Env::open("swarm.db", EnvOptions::default())?;
//! let me = AgentId::new("worker.0@h1");
//! env.push(&me, "builds", "{\"crate\":\"wawe\"}", PushOptions::default()).await?;
//! if let Some(task) = env.claim(&me, "builds", 30_000, 0).await? {
//!     env.complete(&me, task.id, task.token, "ok").await?;
//! }
//! # Ok(()) }
//! ```

/// Run `$body` on the environment's backend, bound to `$s`: the one place
/// an [`Env`] call meets the backend it dispatches to. Both arms must type-check
/// alike, so a backend missing an operation of the contract does not compile.
macro_rules! store {
    ($env:expr, $s:ident => $body:expr) => {
        match &$env.inner.backend {
            $crate::env::store::Backend::Sqlite($s) => $body,
            $crate::env::store::Backend::Postgres($s) => $body,
        }
    };
}

mod agents;
mod clock;
mod copy;
mod error;
mod events;
mod inspect;
mod journal;
mod learnings;
mod limits;
mod location;
mod options;
pub mod policy;
mod postgres;
mod reservations;
mod resource;
mod signals;
mod sqlite;
mod store;
mod tasks;
mod types;
mod values;
mod wake;
mod workspace;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use clock::{Clock, ManualClock, SystemClock};
pub use copy::Copied;
pub use error::{EnvError, EnvResult, OpenError};
pub use inspect::{
    Direction, EventPage, MAX_EVENTS_SCANNED, MAX_PAGE, MAX_STORY, MAX_STORY_SCANNED, Overview,
    QueueCounts, Story, TaskLinks, TaskQuery, TaskRef, Waiter,
};
pub use learnings::MAX_LEARNINGS_LISTED;
pub use location::{DEFAULT_SCHEMA, EnvLocation};
pub use options::{Durability, EnvOptions};
pub use reservations::MAX_HOLDINGS_LISTED;
pub use resource::{overlaps, validate_resource};
pub use signals::MAX_TRAILS_LISTED;
pub use sqlite::SCHEMA_VERSION;
pub use tasks::MAX_TASKS_LISTED;
pub use types::*;
pub use wake::WakeTally;
pub use workspace::{Edit, EditKind, FileChange, WorkspaceRecord, validate_path};

use limits::MAX_WAIT_MS;
use store::Backend;

/// An open environment. Cheap to clone; clones share the backend's
/// connections, its writer and its change notifications.
#[derive(Clone)]
pub struct Env {
    inner: Arc<Inner>,
}

struct Inner {
    location: EnvLocation,
    backend: Backend,
}

impl Env {
    /// Open the environment at `at` (a file path or a `postgres://` URL),
    /// creating it if it does not exist.
    ///
    /// Anything that is not a wawe environment, comes from a newer wawe or is
    /// damaged is refused and left untouched.
    pub fn open(at: impl Into<EnvLocation>, opts: EnvOptions) -> Result<Env, OpenError> {
        Self::open_inner(at.into(), opts, None, true)
    }

    /// Like [`Env::open`], reading time from `clock` (tests use a
    /// [`ManualClock`]). On PostgreSQL the clock given here replaces the
    /// database's clock, which decides otherwise.
    pub fn open_with_clock(
        at: impl Into<EnvLocation>,
        opts: EnvOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Env, OpenError> {
        Self::open_inner(at.into(), opts, Some(clock), true)
    }

    /// Open an environment that already exists; a missing one is
    /// [`OpenError::Missing`] and nothing is created (for tools that only look).
    pub fn open_existing(at: impl Into<EnvLocation>, opts: EnvOptions) -> Result<Env, OpenError> {
        Self::open_inner(at.into(), opts, None, false)
    }

    fn open_inner(
        location: EnvLocation,
        opts: EnvOptions,
        clock: Option<Arc<dyn Clock>>,
        may_create: bool,
    ) -> Result<Env, OpenError> {
        let backend = match &location {
            EnvLocation::File(path) => Backend::Sqlite(sqlite::SqliteStore::open(
                path,
                opts,
                clock.unwrap_or_else(|| Arc::new(SystemClock)),
                may_create,
            )?),
            EnvLocation::Postgres(url) => {
                Backend::Postgres(postgres::PgStore::open(url, opts, clock, may_create)?)
            }
        };
        Ok(Env {
            inner: Arc::new(Inner { location, backend }),
        })
    }

    /// Where this environment lives.
    pub fn location(&self) -> &EnvLocation {
        &self.inner.location
    }

    /// The file this environment lives in, for a SQLite environment.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.inner.location.as_file()
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &EnvOptions {
        store!(self, s => s.options())
    }

    /// The environment's current time (ms since the epoch): on PostgreSQL the
    /// database's clock, as last seen from this host.
    pub fn now_ms(&self) -> u64 {
        store!(self, s => s.now_ms())
    }

    /// How many transactions this environment's writer has committed: with
    /// group commit, fewer than the write operations it ran.
    pub fn commits(&self) -> u64 {
        store!(self, s => s.tally().commits())
    }

    /// How many write operations this environment's writer has run, kept
    /// or rolled back (not those refused unrun because their batch broke).
    pub fn operations(&self) -> u64 {
        store!(self, s => s.tally().operations())
    }

    /// Flush outstanding writes and stop the writer; later calls fail with
    /// `Unavailable`. Dropping the last clone closes too.
    pub fn close(&self) {
        store!(self, s => s.close())
    }

    /// Delete the whole environment: the file (with its write-ahead log), or
    /// the PostgreSQL schema with everything in it. It is closed first: later
    /// calls on any clone fail with `Unavailable`.
    pub async fn destroy(self) -> EnvResult<()> {
        store!(self, s => s.destroy().await)
    }

    /// Copy committed pages from SQLite's write-ahead log into the database
    /// (a no-op on PostgreSQL, which checkpoints itself).
    pub async fn checkpoint(&self) -> EnvResult<()> {
        store!(self, s => s.checkpoint().await)
    }

    /// A receiver that sees the newest journal sequence number after every
    /// commit, from this process or another one sharing the environment.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        store!(self, s => s.subscribe())
    }

    /// The waiters of this handle (claims, reserves, events waits), woken by
    /// what commits touch.
    pub(crate) fn wakes(&self) -> &Arc<wake::Wakes> {
        store!(self, s => s.wakes())
    }

    /// How many calls wait on this handle now (claims, reserves, events
    /// waits).
    pub fn waiting_calls(&self) -> usize {
        self.wakes().waiting()
    }

    /// How many waiters commits have woken so far, targeted and general:
    /// with targeted wake-ups a commit wakes only the waiters it concerns.
    pub fn wake_tally(&self) -> WakeTally {
        self.wakes().tally()
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
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("location", &self.inner.location)
            .finish()
    }
}
