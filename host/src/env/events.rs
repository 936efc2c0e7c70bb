//! The journal's task events, built in one place for every backend (and for
//! PostgreSQL's hot path), so a task's story reads the same wherever it lives.

use std::fmt::Display;

use serde_json::{Value, json};

use super::TaskState;

/// One change as the journal records it; the agent and the time are the
/// transaction's.
#[derive(Clone)]
pub(crate) struct Change {
    pub(crate) kind: &'static str,
    pub(crate) subject: String,
    pub(crate) detail: Value,
}

fn task(kind: &'static str, id: impl Display, detail: Value) -> Change {
    Change {
        kind,
        subject: format!("task/{id}"),
        detail,
    }
}

pub(crate) fn task_pushed(
    id: impl Display,
    queue: &str,
    state: TaskState,
    priority: i32,
    not_before: u64,
    depends_on: &[u64],
) -> Change {
    task(
        "task.pushed",
        id,
        json!({
            "queue": queue, "state": state, "priority": priority,
            "not_before": not_before, "depends_on": depends_on,
        }),
    )
}

pub(crate) fn task_claimed(
    id: impl Display,
    queue: &str,
    attempt: u32,
    token: u64,
    expires_at: u64,
) -> Change {
    task(
        "task.claimed",
        id,
        json!({"queue": queue, "attempt": attempt, "token": token, "expires_at": expires_at}),
    )
}

pub(crate) fn task_completed(id: impl Display, token: u64) -> Change {
    task("task.completed", id, json!({"token": token}))
}

pub(crate) fn task_extended(id: impl Display, expires_at: u64) -> Change {
    task("task.extended", id, json!({"expires_at": expires_at}))
}

pub(crate) fn task_retried(
    id: impl Display,
    queue: &str,
    attempts: u32,
    not_before: u64,
    error: &str,
) -> Change {
    task(
        "task.retried",
        id,
        json!({"queue": queue, "attempts": attempts, "not_before": not_before, "error": error}),
    )
}

pub(crate) fn task_dead(id: impl Display, attempts: u32, error: &str) -> Change {
    task(
        "task.dead",
        id,
        json!({"attempts": attempts, "error": error}),
    )
}

/// A blocked task cancelled because task `because` did not finish.
pub(crate) fn task_cancelled(id: impl Display, because: u64) -> Change {
    task("task.cancelled", id, json!({"because": because}))
}

/// A task ended by an operator (`by`) while blocked, ready or claimed.
pub(crate) fn task_cancelled_by(id: impl Display, by: &str, was: TaskState) -> Change {
    task("task.cancelled", id, json!({"by": by, "was": was}))
}

/// A dead or cancelled task put back by an operator (`by`), now `state`.
pub(crate) fn task_requeued(
    id: impl Display,
    queue: &str,
    by: &str,
    was: TaskState,
    state: TaskState,
) -> Change {
    task(
        "task.requeued",
        id,
        json!({"queue": queue, "by": by, "was": was, "state": state}),
    )
}

/// A blocked task made ready once task `after` was done.
pub(crate) fn task_ready(id: impl Display, queue: &str, after: u64) -> Change {
    task("task.ready", id, json!({"queue": queue, "after": after}))
}

/// A claimed task handed back (its agent was stopped), its attempt given back.
pub(crate) fn task_returned(id: impl Display, queue: &str, why: &str) -> Change {
    task("task.returned", id, json!({"queue": queue, "why": why}))
}
