//! Task queues: push with priority, delay, dedupe and dependencies; claim with
//! a visibility timeout; complete, fail and extend guarded by the claim's
//! fencing token; retry with backoff; dead letters and cascade cancel.

use crate::env::events;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, Tx};
use crate::env::inspect::{refuse_action, requeue_state};
use crate::env::limits::{i, u};
use crate::env::policy::backoff_ms;
use crate::env::{
    Claimed, EnvError, EnvResult, PushOptions, Pushed, Task, TaskLinks, TaskQuery, TaskRef,
    TaskState,
};

/// The next task to claim: the highest priority, oldest first, through the
/// partial index of ready tasks (no sort).
const NEXT_READY: &str = "SELECT id, payload, attempts FROM tasks INDEXED BY tasks_ready
     WHERE state = 'ready' AND queue = ?1 AND not_before <= ?2
     ORDER BY priority DESC, id LIMIT 1";

/// Claims that lapsed by `?1`, found through the index of claim expiries.
const LAPSED: &str = "SELECT id, attempts, max_attempts, claim_expires FROM tasks
     INDEXED BY tasks_claimed WHERE state = 'claimed' AND claim_expires <= ?1
     ORDER BY claim_expires, id";

/// [`LAPSED`], in queue `?2` only.
const LAPSED_IN_QUEUE: &str = "SELECT id, attempts, max_attempts, claim_expires FROM tasks
     INDEXED BY tasks_claimed
     WHERE state = 'claimed' AND claim_expires <= ?1 AND queue = ?2
     ORDER BY claim_expires, id";

/// Blocked dependents of task `?1` (driven from the reverse dependency index:
/// `CROSS JOIN` keeps SQLite from scanning `tasks` instead).
const BLOCKED_DEPENDENTS: &str = "SELECT t.id FROM task_deps d CROSS JOIN tasks t ON t.id = d.task
     WHERE d.depends_on = ?1 AND t.state = 'blocked' ORDER BY d.task";

/// Blocked dependents of task `?1` whose dependencies are now all done.
const NOW_UNBLOCKED: &str =
    "SELECT t.id, t.queue FROM task_deps d CROSS JOIN tasks t ON t.id = d.task
     WHERE d.depends_on = ?1 AND t.state = 'blocked'
       AND NOT EXISTS (SELECT 1 FROM task_deps o CROSS JOIN tasks ot ON ot.id = o.depends_on
                       WHERE o.task = t.id AND ot.state != 'done')
     ORDER BY d.task";

fn push(
    tx: &mut Tx<'_>,
    agent: &str,
    queue: &str,
    payload: &str,
    opts: &PushOptions,
) -> EnvResult<Pushed> {
    let mut state = TaskState::Ready;
    let deps = &opts.depends_on;
    for dep in deps {
        let dep_state: Option<String> = tx
            .conn
            .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
            .query_row([i(*dep)], |r| r.get(0))
            .optional()?;
        match dep_state.as_deref().and_then(TaskState::parse) {
            None => {
                return Err(EnvError::not_found(format!(
                    "task {dep} (named in depends-on) does not exist"
                )));
            }
            Some(TaskState::Dead | TaskState::Cancelled) => state = TaskState::Cancelled,
            Some(TaskState::Done) => {}
            Some(_) if state == TaskState::Ready => state = TaskState::Blocked,
            Some(_) => {}
        }
    }
    if let Some(key) = &opts.dedupe_key {
        let live: Option<i64> = tx
            .conn
            .prepare_cached(
                "SELECT id FROM tasks WHERE queue = ?1 AND dedupe_key = ?2
                 AND state IN ('blocked', 'ready', 'claimed')",
            )?
            .query_row(params![queue, key], |r| r.get(0))
            .optional()?;
        if let Some(id) = live {
            return Ok(Pushed {
                id: u(id),
                deduplicated: true,
            });
        }
    }
    let max_attempts = match opts.max_attempts {
        0 => tx.opts.default_max_attempts,
        n => n,
    };
    let not_before = tx.now.saturating_add(opts.delay_ms);
    let id = tx
        .conn
        .prepare_cached(
            "INSERT INTO tasks (queue, payload, state, priority, max_attempts, not_before,
                                dedupe_key, last_error, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )?
        .insert(params![
            queue,
            payload,
            state.as_str(),
            opts.priority,
            max_attempts,
            i(not_before),
            opts.dedupe_key,
            (state == TaskState::Cancelled).then_some("a dependency had already failed"),
            i(tx.now)
        ])?;
    let mut add = tx
        .conn
        .prepare_cached("INSERT INTO task_deps (task, depends_on) VALUES (?1, ?2)")?;
    for dep in deps {
        add.execute(params![id, i(*dep)])?;
    }
    tx.record(
        agent,
        events::task_pushed(id, queue, state, opts.priority, not_before, deps),
    )?;
    Ok(Pushed {
        id: u(id),
        deduplicated: false,
    })
}

fn claim(tx: &mut Tx<'_>, agent: &str, queue: &str, lease_ms: u64) -> EnvResult<Option<Claimed>> {
    requeue_expired(tx, Some(queue))?;
    let next: Option<(i64, String, i64)> = tx
        .conn
        .prepare_cached(NEXT_READY)?
        .query_row(params![queue, i(tx.now)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((id, payload, attempts)) = next else {
        return Ok(None);
    };
    let token = tx.next_token()?;
    let expires = tx.now.saturating_add(lease_ms);
    let attempt = attempts as u32 + 1;
    tx.conn
        .prepare_cached(
            "UPDATE tasks SET state = 'claimed', attempts = ?1, claimed_by = ?2,
                 claim_token = ?3, claim_expires = ?4, updated_at = ?5 WHERE id = ?6",
        )?
        .execute(params![attempt, agent, i(token), i(expires), i(tx.now), id])?;
    tx.record(
        agent,
        events::task_claimed(id, queue, attempt, token, expires),
    )?;
    Ok(Some(Claimed {
        id: u(id),
        queue: queue.to_owned(),
        payload,
        attempt,
        token,
        lease_expires_at: expires,
    }))
}

/// What a guarded operation learns about the claim it holds.
struct Held {
    attempts: u32,
    max_attempts: u32,
}

/// Check that `agent` holds task `id` with `token` and the claim has not lapsed.
fn guard(tx: &Tx<'_>, agent: &str, id: u64, token: u64) -> EnvResult<Held> {
    type Row = (String, Option<String>, Option<i64>, Option<i64>, u32, u32);
    let row: Option<Row> = tx
        .conn
        .prepare_cached(
            "SELECT state, claimed_by, claim_token, claim_expires, attempts, max_attempts
             FROM tasks WHERE id = ?1",
        )?
        .query_row([i(id)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some((state, by, held_token, expires, attempts, max_attempts)) = row else {
        return Err(EnvError::not_found(format!("task {id} does not exist")));
    };
    let current = state == "claimed"
        && by.as_deref() == Some(agent)
        && held_token == Some(i(token))
        && expires.is_some_and(|e| u(e) > tx.now);
    if !current {
        return Err(EnvError::StaleToken(token));
    }
    Ok(Held {
        attempts,
        max_attempts,
    })
}

/// After an attempt that failed at `failed_at`: back to ready after a
/// backoff counted from then, or dead.
#[allow(clippy::too_many_arguments)]
fn retry_or_die(
    tx: &mut Tx<'_>,
    agent: &str,
    id: u64,
    held: &Held,
    error: &str,
    retry: bool,
    failed_at: u64,
) -> EnvResult<()> {
    if retry && held.attempts < held.max_attempts {
        let delay = backoff_ms(held.attempts, tx.opts.retry_base_ms, tx.opts.retry_max_ms);
        let not_before = failed_at.saturating_add(delay);
        tx.conn
            .prepare_cached(
                "UPDATE tasks SET state = 'ready', not_before = ?1, last_error = ?2,
                     claimed_by = NULL, claim_token = NULL, claim_expires = NULL, updated_at = ?3
                 WHERE id = ?4",
            )?
            .execute(params![i(not_before), error, i(tx.now), i(id)])?;
        let queue: String = tx
            .conn
            .prepare_cached("SELECT queue FROM tasks WHERE id = ?1")?
            .query_row([i(id)], |r| r.get(0))?;
        tx.record(
            agent,
            events::task_retried(id, &queue, held.attempts, not_before, error),
        )?;
        return Ok(());
    }
    tx.conn
        .prepare_cached(
            "UPDATE tasks SET state = 'dead', last_error = ?1, claimed_by = NULL,
                 claim_token = NULL, claim_expires = NULL, updated_at = ?2 WHERE id = ?3",
        )?
        .execute(params![error, i(tx.now), i(id)])?;
    tx.record(agent, events::task_dead(id, held.attempts, error))?;
    cascade_cancel(tx, id)
}

/// Cancel every blocked task that (transitively) depends on `id`.
fn cascade_cancel(tx: &mut Tx<'_>, id: u64) -> EnvResult<()> {
    let mut stack = vec![id];
    while let Some(failed) = stack.pop() {
        let dependents: Vec<i64> = tx
            .conn
            .prepare_cached(BLOCKED_DEPENDENTS)?
            .query_map([i(failed)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for dep in dependents {
            let why = format!("task {failed}, which it depends on, did not finish");
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET state = 'cancelled', last_error = ?1, updated_at = ?2
                     WHERE id = ?3",
                )?
                .execute(params![why, i(tx.now), dep])?;
            tx.record("env", events::task_cancelled(dep, failed))?;
            stack.push(u(dep));
        }
    }
    Ok(())
}

/// Make ready every blocked dependent of `done` whose dependencies are all done.
fn unblock_dependents(tx: &mut Tx<'_>, done: u64) -> EnvResult<()> {
    let ready: Vec<(i64, String)> = tx
        .conn
        .prepare_cached(NOW_UNBLOCKED)?
        .query_map([i(done)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, queue) in ready {
        tx.conn
            .prepare_cached("UPDATE tasks SET state = 'ready', updated_at = ?1 WHERE id = ?2")?
            .execute(params![i(tx.now), id])?;
        tx.record("env", events::task_ready(id, &queue, done))?;
    }
    Ok(())
}

/// Put back tasks whose claim lapsed (in `queue`, or everywhere).
pub(crate) fn requeue_expired(tx: &mut Tx<'_>, queue: Option<&str>) -> EnvResult<u64> {
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    let lapsed: Vec<(i64, u32, u32, i64)> = match queue {
        Some(queue) => tx
            .conn
            .prepare_cached(LAPSED_IN_QUEUE)?
            .query_map(params![i(tx.now), queue], row)?
            .collect::<Result<_, _>>()?,
        None => tx
            .conn
            .prepare_cached(LAPSED)?
            .query_map(params![i(tx.now)], row)?
            .collect::<Result<_, _>>()?,
    };
    for (id, attempts, max_attempts, lapsed_at) in &lapsed {
        let held = Held {
            attempts: *attempts,
            max_attempts: *max_attempts,
        };
        let why = "the claim lapsed (visibility timeout)";
        retry_or_die(tx, "env", u(*id), &held, why, true, u(*lapsed_at))?;
    }
    Ok(lapsed.len() as u64)
}

/// Put back every task claimed by `agent`. When the agent `failed` (crashed
/// or returned an error) the attempt counts, with backoff; when it was
/// stopped from outside, the task goes back at once and the attempt is
/// given back, so a shutdown never uses up a task's attempts.
pub(crate) fn requeue_agent(
    tx: &mut Tx<'_>,
    agent: &str,
    why: &str,
    failed: bool,
) -> EnvResult<u64> {
    let held: Vec<(i64, u32, u32, String)> = tx
        .conn
        .prepare_cached(
            "SELECT id, attempts, max_attempts, queue FROM tasks
             WHERE state = 'claimed' AND claimed_by = ?1 ORDER BY id",
        )?
        .query_map([agent], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, attempts, max_attempts, queue) in &held {
        if !failed {
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET state = 'ready', attempts = max(attempts - 1, 0),
                         not_before = ?1, last_error = ?2, claimed_by = NULL,
                         claim_token = NULL, claim_expires = NULL, updated_at = ?1
                     WHERE id = ?3",
                )?
                .execute(params![i(tx.now), why, id])?;
            tx.record("env", events::task_returned(id, queue, why))?;
            continue;
        }
        let h = Held {
            attempts: *attempts,
            max_attempts: *max_attempts,
        };
        let now = tx.now;
        retry_or_die(tx, "env", u(*id), &h, why, true, now)?;
    }
    Ok(held.len() as u64)
}

/// When a task of `queue` may next become claimable: the earliest future
/// not-before of a ready task or expiry of a claim.
fn next_due(conn: &Connection, queue: &str, now: u64) -> EnvResult<(bool, Option<u64>)> {
    let due_now: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = ?1 AND (
                 (state = 'ready' AND not_before <= ?2) OR (state = 'claimed' AND claim_expires <= ?2)))",
        )?
        .query_row(params![queue, i(now)], |r| r.get(0))?;
    let later: Option<i64> = conn
        .prepare_cached(
            "SELECT min(t) FROM (
                 SELECT min(not_before) AS t FROM tasks WHERE queue = ?1 AND state = 'ready'
                 UNION ALL
                 SELECT min(claim_expires) FROM tasks WHERE queue = ?1 AND state = 'claimed')",
        )?
        .query_row([queue], |r| r.get(0))?;
    Ok((due_now, later.map(u)))
}

fn load_task(conn: &Connection, id: u64) -> EnvResult<Option<Task>> {
    let task = conn
        .prepare_cached(&format!("{TASK_COLUMNS} WHERE id = ?1"))?
        .query_row([i(id)], task_row)
        .optional()?;
    let Some(mut task) = task else {
        return Ok(None);
    };
    task.depends_on = deps_of(conn, id)?;
    Ok(Some(task))
}

/// A page of tasks in id order (see [`TaskQuery`]).
fn tasks_page(conn: &Connection, q: &TaskQuery) -> EnvResult<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{TASK_COLUMNS} WHERE id > ?1 AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR state = ?3)
           AND (?4 IS NULL OR (state = 'claimed' AND claimed_by = ?4))
         ORDER BY id LIMIT ?5"
    ))?;
    let mut tasks = stmt
        .query_map(
            params![
                i(q.after),
                q.queue,
                q.state.map(TaskState::as_str),
                q.claimed_by,
                q.limit
            ],
            task_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    for t in &mut tasks {
        t.depends_on = deps_of(conn, t.id)?;
    }
    Ok(tasks)
}

fn deps_of(conn: &Connection, id: u64) -> EnvResult<Vec<u64>> {
    Ok(conn
        .prepare_cached("SELECT depends_on FROM task_deps WHERE task = ?1 ORDER BY depends_on")?
        .query_map([i(id)], |r| r.get::<_, i64>(0).map(u))?
        .collect::<Result<_, _>>()?)
}

const TASK_COLUMNS: &str = "SELECT id, queue, payload, state, priority, attempts, max_attempts,
    not_before, dedupe_key, claimed_by, result, last_error, created_at, updated_at,
    claim_expires FROM tasks";

fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: u(r.get(0)?),
        queue: r.get(1)?,
        payload: r.get(2)?,
        state: TaskState::parse(&r.get::<_, String>(3)?).unwrap_or(TaskState::Ready),
        priority: r.get(4)?,
        attempts: r.get(5)?,
        max_attempts: r.get(6)?,
        not_before: u(r.get(7)?),
        dedupe_key: r.get(8)?,
        depends_on: Vec::new(),
        claimed_by: r.get(9)?,
        claim_expires_at: r.get::<_, Option<i64>>(14)?.map(u),
        result: r.get(10)?,
        last_error: r.get(11)?,
        created_at: u(r.get(12)?),
        updated_at: u(r.get(13)?),
    })
}

impl SqliteStore {
    pub(crate) async fn push(
        &self,
        agent: &str,
        queue: &str,
        payload: &str,
        opts: PushOptions,
    ) -> EnvResult<Pushed> {
        let (agent, queue, payload) = (agent.to_owned(), queue.to_owned(), payload.to_owned());
        self.write(move |tx| push(tx, &agent, &queue, &payload, &opts))
            .await
    }

    pub(crate) async fn claim_once(
        &self,
        agent: &str,
        queue: &str,
        lease_ms: u64,
    ) -> EnvResult<Option<Claimed>> {
        let (agent, queue) = (agent.to_owned(), queue.to_owned());
        self.write(move |tx| claim(tx, &agent, &queue, lease_ms))
            .await
    }

    /// Whether a task of `queue` is claimable now, else when one may next be.
    pub(crate) async fn next_due(&self, queue: &str) -> EnvResult<(bool, Option<u64>)> {
        let queue = queue.to_owned();
        self.read(move |conn, now| next_due(conn, &queue, now))
            .await
    }

    pub(crate) async fn complete(
        &self,
        agent: &str,
        id: u64,
        token: u64,
        result: &str,
    ) -> EnvResult<()> {
        let (agent, result) = (agent.to_owned(), result.to_owned());
        self.write(move |tx| {
            guard(tx, &agent, id, token)?;
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET state = 'done', result = ?1, claimed_by = NULL,
                         claim_token = NULL, claim_expires = NULL, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![result, i(tx.now), i(id)])?;
            tx.record(&agent, events::task_completed(id, token))?;
            unblock_dependents(tx, id)
        })
        .await
    }

    pub(crate) async fn fail(
        &self,
        agent: &str,
        id: u64,
        token: u64,
        error: &str,
        retry: bool,
    ) -> EnvResult<()> {
        let (agent, error) = (agent.to_owned(), error.to_owned());
        self.write(move |tx| {
            let held = guard(tx, &agent, id, token)?;
            let now = tx.now;
            retry_or_die(tx, &agent, id, &held, &error, retry, now)
        })
        .await
    }

    pub(crate) async fn extend(
        &self,
        agent: &str,
        id: u64,
        token: u64,
        lease_ms: u64,
    ) -> EnvResult<u64> {
        let agent = agent.to_owned();
        self.write(move |tx| {
            guard(tx, &agent, id, token)?;
            let expires = tx.now.saturating_add(lease_ms);
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET claim_expires = ?1, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![i(expires), i(tx.now), i(id)])?;
            tx.record(&agent, events::task_extended(id, expires))?;
            Ok(expires)
        })
        .await
    }

    pub(crate) async fn get_task(&self, id: u64) -> EnvResult<Option<Task>> {
        self.read(move |conn, _| load_task(conn, id)).await
    }

    pub(crate) async fn list_tasks(
        &self,
        queue: Option<&str>,
        state: Option<TaskState>,
        limit: u32,
    ) -> EnvResult<Vec<Task>> {
        let query = TaskQuery {
            queue: queue.map(str::to_owned),
            state,
            limit,
            ..TaskQuery::default()
        };
        self.read(move |conn, _| tasks_page(conn, &query)).await
    }

    pub(crate) async fn tasks_page(&self, query: &TaskQuery) -> EnvResult<Vec<Task>> {
        let query = query.clone();
        self.read(move |conn, _| tasks_page(conn, &query)).await
    }

    pub(crate) async fn task_links(&self, id: u64, limit: u32) -> EnvResult<TaskLinks> {
        self.read(move |conn, _| {
            let node = |r: &rusqlite::Row<'_>| {
                Ok(TaskRef {
                    id: u(r.get(0)?),
                    queue: r.get(1)?,
                    state: TaskState::parse(&r.get::<_, String>(2)?).unwrap_or(TaskState::Ready),
                })
            };
            let depends_on = conn
                .prepare_cached(
                    "SELECT t.id, t.queue, t.state FROM task_deps d CROSS JOIN tasks t
                     ON t.id = d.depends_on WHERE d.task = ?1 ORDER BY d.depends_on",
                )?
                .query_map([i(id)], node)?
                .collect::<Result<_, _>>()?;
            let dependents = conn
                .prepare_cached(
                    "SELECT t.id, t.queue, t.state FROM task_deps d CROSS JOIN tasks t
                     ON t.id = d.task WHERE d.depends_on = ?1 ORDER BY d.task LIMIT ?2",
                )?
                .query_map(params![i(id), limit], node)?
                .collect::<Result<_, _>>()?;
            Ok(TaskLinks {
                depends_on,
                dependents,
            })
        })
        .await
    }

    pub(crate) async fn retry_task(&self, who: &str, id: u64) -> EnvResult<()> {
        let who = who.to_owned();
        self.write(move |tx| {
            let task = load_task(tx.conn, id)?
                .ok_or_else(|| EnvError::not_found(format!("task {id} does not exist")))?;
            let mut deps = Vec::new();
            for dep in &task.depends_on {
                let state: String = tx
                    .conn
                    .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
                    .query_row([i(*dep)], |r| r.get(0))?;
                deps.push((*dep, TaskState::parse(&state).unwrap_or(TaskState::Ready)));
            }
            let live_twin = match &task.dedupe_key {
                Some(key) => tx
                    .conn
                    .prepare_cached(
                        "SELECT id FROM tasks WHERE queue = ?1 AND dedupe_key = ?2
                         AND state IN ('blocked', 'ready', 'claimed')",
                    )?
                    .query_row(params![task.queue, key], |r| r.get::<_, i64>(0).map(u))
                    .optional()?,
                None => None,
            };
            let state = requeue_state(&task, &deps, live_twin)?;
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET state = ?1, attempts = 0, not_before = ?2, claimed_by = NULL,
                         claim_token = NULL, claim_expires = NULL, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![state.as_str(), i(tx.now), i(id)])?;
            tx.record(
                &who,
                events::task_requeued(id, &task.queue, &who, task.state, state),
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn cancel_task(&self, who: &str, id: u64) -> EnvResult<()> {
        let who = who.to_owned();
        self.write(move |tx| {
            let state: String = tx
                .conn
                .prepare_cached("SELECT state FROM tasks WHERE id = ?1")?
                .query_row([i(id)], |r| r.get(0))
                .optional()?
                .ok_or_else(|| EnvError::not_found(format!("task {id} does not exist")))?;
            let was = TaskState::parse(&state).unwrap_or(TaskState::Ready);
            if was.is_final() {
                return Err(refuse_action("cancelled", id, was));
            }
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET state = 'cancelled', last_error = ?1, claimed_by = NULL,
                         claim_token = NULL, claim_expires = NULL, updated_at = ?2 WHERE id = ?3",
                )?
                .execute(params![format!("cancelled by {who}"), i(tx.now), i(id)])?;
            tx.record(&who, events::task_cancelled_by(id, &who, was))?;
            cascade_cancel(tx, id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::sqlite::tests::assert_no_scan_or_sort;

    #[test]
    fn hot_task_queries_use_indexes_without_sorting() {
        assert_no_scan_or_sort(&[
            NEXT_READY,
            LAPSED,
            LAPSED_IN_QUEUE,
            BLOCKED_DEPENDENTS,
            NOW_UNBLOCKED,
        ]);
    }
}
