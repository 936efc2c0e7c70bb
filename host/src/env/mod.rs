//! The environment: the shared state agents coordinate through.
//!
//! Reservations (leases with fencing tokens), task queues, learnings, decaying
//! signals, versioned values and a journal of every change. Every operation is
//! one transaction, attributed to the caller's host-assigned [`AgentId`], and
//! appends what it changed to the journal in that same transaction.
//!
//! The embedded backend is SQLite ([`Env`]); nothing here knows about
//! WebAssembly.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wawe::env::{AgentId, Env, EnvOptions, PushOptions};
//!
//! let env = Env::open("swarm.db", EnvOptions::default())?;
//! let me = AgentId::new("worker.0@h1");
//! env.push(&me, "builds", "{\"crate\":\"wawe\"}", PushOptions::default()).await?;
//! if let Some(task) = env.claim(&me, "builds", 30_000, 0).await? {
//!     env.complete(&me, task.id, task.token, "ok").await?;
//! }
//! # Ok(()) }
//! ```

mod clock;
mod error;
pub mod policy;
mod resource;
mod sqlite;
mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{EnvError, EnvResult, OpenError};
pub use resource::{overlaps, validate_resource};
pub use sqlite::{Env, SCHEMA_VERSION, Swept};
pub use types::*;

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a process crash;
    /// the last commits may be lost if the machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged.
    Full,
}

impl Durability {
    /// `normal` or `full`, as flags and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Normal => "normal",
            Durability::Full => "full",
        }
    }
}

/// Settings of an open environment: limits, defaults and durability.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// How commits reach the disk.
    pub durability: Durability,
    /// How long to wait for another process's lock before giving up.
    pub busy_timeout_ms: u64,
    /// The largest payload, body, value or result accepted, in bytes.
    pub max_payload_bytes: usize,
    /// The longest name (queue, resource, topic, trail, key), in bytes.
    pub max_name_bytes: usize,
    /// The most resources one `reserve` may name.
    pub max_resources: usize,
    /// Attempts of a task that does not set its own.
    pub default_max_attempts: u32,
    /// Backoff before the second attempt; doubles per attempt.
    pub retry_base_ms: u64,
    /// Backoff never grows beyond this.
    pub retry_max_ms: u64,
    /// Half-life of a new signal trail that does not set its own.
    pub signal_half_life_ms: u64,
    /// Half-life of a learning's freshness in search ranking.
    pub learning_half_life_ms: u64,
    /// Events older than this are pruned by [`Env::sweep`].
    pub event_retention_ms: u64,
    /// Operations at most committed together by the writer.
    pub max_batch: usize,
    /// How often to look for commits made by other processes, while
    /// something waits: the added latency of a wake across processes.
    pub change_check_interval_ms: u64,
    /// The write-ahead log is cut back to this size after each checkpoint
    /// (a long reader can make it grow meanwhile; it never stays large).
    pub wal_size_limit_bytes: u64,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Normal,
            busy_timeout_ms: 5_000,
            max_payload_bytes: 1 << 20,
            max_name_bytes: 1024,
            max_resources: 64,
            default_max_attempts: 3,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            signal_half_life_ms: 60_000,
            learning_half_life_ms: 7 * 24 * 3_600_000,
            event_retention_ms: 7 * 24 * 3_600_000,
            max_batch: 256,
            change_check_interval_ms: 2,
            wal_size_limit_bytes: 64 << 20,
        }
    }
}
