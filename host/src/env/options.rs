//! Settings of an open environment: durability, limits and defaults.

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// SQLite: `synchronous=NORMAL` in WAL mode: a commit survives a process
    /// crash; the last commits may be lost if the machine loses power.
    /// PostgreSQL: `synchronous_commit=off`: a crash of the database server
    /// (not of a host) can lose the last commits acknowledged within about
    /// three times `wal_writer_delay` (600 ms by default); never half of one.
    #[default]
    Normal,
    /// SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`: every
    /// commit is on disk before it is acknowledged.
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
    /// Events older than this are pruned by [`Env::sweep`](super::Env::sweep).
    pub event_retention_ms: u64,
    /// Operations at most committed together by the writer.
    pub max_batch: usize,
    /// PostgreSQL: writer connections per host, each committing its own
    /// batches while the others gather theirs, so the database works on
    /// several at once (SQLite has one writer: it allows no more).
    pub writers: usize,
    /// How often to look for commits made by other processes, while
    /// something waits: the added latency of a wake across processes (SQLite).
    pub change_check_interval_ms: u64,
    /// How often a PostgreSQL host re-reads the journal head in case a
    /// notification was lost (wake-ups are pushed; this is only a backstop).
    pub notify_fallback_ms: u64,
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
            writers: 2,
            change_check_interval_ms: 2,
            notify_fallback_ms: 1_000,
            wal_size_limit_bytes: 64 << 20,
        }
    }
}
