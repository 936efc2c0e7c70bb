//! The contract between [`Env`](super::Env) and its backends.
//!
//! Each backend (`SqliteStore`, `PgStore`) offers the same set of inherent
//! methods: one write per operation (run in the backend's group commit and
//! answered after the commit), one read per query, and single attempts where
//! the operation waits (`claim_once`, `reserve_once`, `read_events`). The
//! `store!` macro dispatches every [`Env`](super::Env) call to them, so a
//! method missing from one backend, or shaped differently, fails to compile.
//! What the backends must not differ in (argument checks, waiting, ranking,
//! decay, backoff) stays above them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{EnvError, Learning, Lease};

/// The backend an environment lives in (one per open environment, behind an
/// `Arc`: the size of its variants does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// One SQLite file: the embedded default.
    Sqlite(SqliteStore),
    /// A schema in a PostgreSQL database: hosts on several machines.
    Postgres(PgStore),
}

/// Counts of a backend writer's work, for benchmarks and diagnostics.
#[derive(Default)]
pub(crate) struct Tally {
    /// Transactions committed.
    pub(crate) commits: AtomicU64,
    /// Operations run (kept or rolled back).
    pub(crate) operations: AtomicU64,
}

impl Tally {
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    pub(crate) fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }
}

/// What one attempt to reserve found.
pub(crate) enum Attempt {
    Granted(Lease),
    /// Blocked by `conflict`; worth trying again at `retry_at` (a lease
    /// expiring) or on the next change. `waiter` is the caller's place in
    /// the queue, made by this attempt if it asked to queue.
    Blocked {
        conflict: EnvError,
        waiter: Option<u64>,
        retry_at: Option<u64>,
    },
}

/// A learning found by full-text search, before the shared ranking.
pub(crate) struct Candidate {
    pub(crate) learning: Learning,
    /// The backend's full-text relevance (higher is better).
    pub(crate) relevance: f64,
    /// When it was recorded or last endorsed, whichever is later.
    pub(crate) fresh_since: u64,
}
