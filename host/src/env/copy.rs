//! Moving an environment between backends (`wawe env copy`): every table
//! read in one snapshot of the source, written in one transaction into an
//! empty target, with every counter (fencing tokens, ids, the journal's
//! sequence numbers) carried over, so tokens stay valid and nothing is ever
//! numbered twice. The whole environment passes through memory.

use super::{Env, EnvError, EnvResult};

/// A column's type, as both backends store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Real,
    Text,
    Bool,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

/// A table both backends have, with the columns they share (each backend
/// derives the rest: PostgreSQL's pending-dependency counts and tag words,
/// SQLite's full-text index).
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [(&'static str, Kind)],
    pub(crate) order: &'static str,
}

use Kind::{Bool, Int, Real, Text};

/// Every table, in an order that inserts what others refer to first.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "hosts",
        columns: &[
            ("id", Text),
            ("hostname", Text),
            ("pid", Int),
            ("started_at", Int),
            ("last_heartbeat", Int),
            ("ttl_ms", Int),
            ("state", Text),
        ],
        order: "id",
    },
    Table {
        name: "agents",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("replica", Int),
            ("host", Text),
            ("digest", Text),
            ("state", Text),
            ("started_at", Int),
            ("last_seen", Int),
            ("ended_at", Int),
            ("end_reason", Text),
            ("restarts", Int),
        ],
        order: "id",
    },
    Table {
        name: "leases",
        columns: &[
            ("id", Int),
            ("agent", Text),
            ("mode", Text),
            ("token", Int),
            ("granted_at", Int),
            ("expires_at", Int),
            ("ttl_ms", Int),
        ],
        order: "id",
    },
    Table {
        name: "lease_resources",
        columns: &[("lease", Int), ("resource", Text)],
        order: "lease, resource",
    },
    Table {
        name: "reservation_waiters",
        columns: &[
            ("id", Int),
            ("agent", Text),
            ("mode", Text),
            ("resources", Text),
            ("deadline", Int),
        ],
        order: "id",
    },
    Table {
        name: "tasks",
        columns: &[
            ("id", Int),
            ("queue", Text),
            ("payload", Text),
            ("state", Text),
            ("priority", Int),
            ("attempts", Int),
            ("max_attempts", Int),
            ("not_before", Int),
            ("dedupe_key", Text),
            ("claimed_by", Text),
            ("claim_token", Int),
            ("claim_expires", Int),
            ("result", Text),
            ("last_error", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        order: "id",
    },
    Table {
        name: "task_deps",
        columns: &[("task", Int), ("depends_on", Int)],
        order: "task, depends_on",
    },
    Table {
        name: "learnings",
        columns: &[
            ("id", Int),
            ("author", Text),
            ("topic", Text),
            ("body", Text),
            ("tags", Text),
            ("created_at", Int),
            ("endorsements", Int),
            ("last_endorsed_at", Int),
        ],
        order: "id",
    },
    Table {
        name: "learning_endorsements",
        columns: &[("learning", Int), ("agent", Text), ("at", Int)],
        order: "learning, agent",
    },
    Table {
        name: "signals",
        columns: &[
            ("trail", Text),
            ("strength", Real),
            ("half_life_ms", Int),
            ("updated_at", Int),
        ],
        order: "trail",
    },
    Table {
        name: "kv",
        columns: &[
            ("key", Text),
            ("value", Text),
            ("version", Int),
            ("fence", Int),
            ("deleted", Bool),
            ("updated_by", Text),
            ("updated_at", Int),
        ],
        order: "key",
    },
    Table {
        name: "workspace",
        columns: &[
            ("id", Text),
            ("path", Text),
            ("host", Text),
            ("registered_at", Int),
        ],
        order: "id",
    },
    Table {
        name: "workspace_files",
        columns: &[
            ("path", Text),
            ("token", Int),
            ("size", Int),
            ("hash", Text),
            ("deleted", Bool),
            ("agent", Text),
            ("updated_at", Int),
        ],
        order: "path",
    },
    Table {
        name: "events",
        columns: &[
            ("seq", Int),
            ("at", Int),
            ("agent", Text),
            ("kind", Text),
            ("subject", Text),
            ("detail", Text),
        ],
        order: "seq",
    },
];

/// The counters of an environment: the last number each has handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) fence: i64,
    pub(crate) hosts: i64,
    pub(crate) leases: i64,
    pub(crate) waiters: i64,
    pub(crate) tasks: i64,
    pub(crate) learnings: i64,
    pub(crate) events: i64,
}

/// A whole environment: its counters, and the rows of each of [`TABLES`].
pub(crate) struct Snapshot {
    pub(crate) counters: Counters,
    pub(crate) tables: Vec<Vec<Vec<Cell>>>,
}

/// What a copy carried over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    /// Rows per table.
    pub rows: Vec<(String, u64)>,
    /// The last fencing token issued (the target issues only newer ones).
    pub last_token: u64,
    /// The journal's last sequence number.
    pub last_seq: u64,
}

/// Refuse to copy into an environment that holds anything.
pub(crate) fn check_empty(counters: &Counters, rows: u64) -> EnvResult<()> {
    if *counters != Counters::default() || rows > 0 {
        return Err(EnvError::invalid(
            "the target environment is not empty: copy only into a new one (another file, \
             or another ?schema=)",
        ));
    }
    Ok(())
}

impl Env {
    /// Copy this whole environment into `to`, which must be new and empty:
    /// tasks, leases, waiters, learnings, signals, values, the journal,
    /// agents and hosts, with every counter. Run it while no host is using
    /// either environment.
    pub async fn copy_to(&self, to: &Env) -> EnvResult<Copied> {
        let snapshot = store!(self, s => s.export().await)?;
        let copied = Copied {
            rows: TABLES
                .iter()
                .zip(&snapshot.tables)
                .map(|(t, rows)| (t.name.to_owned(), rows.len() as u64))
                .collect(),
            last_token: snapshot.counters.fence.max(0) as u64,
            last_seq: snapshot.counters.events.max(0) as u64,
        };
        store!(to, s => s.import(snapshot).await)?;
        Ok(copied)
    }
}
