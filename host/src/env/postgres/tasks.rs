//! Task queues in PostgreSQL. Claims skip rows other hosts hold locked
//! (`FOR UPDATE SKIP LOCKED`), guarded ends lock the task's row, and a blocked
//! task counts its unfinished dependencies, so two dependencies finishing at
//! once in two transactions still make it ready exactly once.

use crate::env::events;
use tokio_postgres::Row;

use super::hot::{self, Hot};
use super::{PgStore, PgTx};
use crate::env::inspect::{refuse_action, requeue_state};
use crate::env::limits::{i, u};
use crate::env::policy::backoff_ms;
use crate::env::{
    Claimed, EnvError, EnvResult, PushOptions, Pushed, Task, TaskLinks, TaskQuery, TaskRef,
    TaskState,
};

/// The database's time for a read (`$1`: an injected time, else its clock).
pub(crate) const READ_NOW: &str =
    "coalesce($1::int8, (extract(epoch FROM statement_timestamp()) * 1000)::int8)";

pub(crate) async fn push(
    tx: &mut PgTx<'_>,
    agent: &str,
    queue: &str,
    payload: &str,
    opts: &PushOptions,
) -> EnvResult<Pushed> {
    let deps: Vec<i64> = opts.depends_on.iter().map(|d| i(*d)).collect();
    let mut state = TaskState::Ready;
    let mut pending = 0i64;
    if !deps.is_empty() {
        // Locked so none of them can finish before this task is recorded as
        // waiting for it.
        let rows = tx
            .query(
                "SELECT id, state FROM tasks WHERE id = ANY($1) ORDER BY id FOR SHARE",
                &[&deps],
            )
            .await?;
        if let Some(missing) = deps
            .iter()
            .find(|d| !rows.iter().any(|r| r.get::<_, i64>(0) == **d))
        {
            return Err(EnvError::not_found(format!(
                "task {missing} (named in depends-on) does not exist"
            )));
        }
        for r in &rows {
            match TaskState::parse(r.get(1)) {
                Some(TaskState::Dead | TaskState::Cancelled) => state = TaskState::Cancelled,
                Some(TaskState::Done) => {}
                _ => pending += 1,
            }
        }
        if state != TaskState::Cancelled && pending > 0 {
            state = TaskState::Blocked;
        }
    }
    if let Some(key) = &opts.dedupe_key {
        let live = tx
            .query_opt(
                "SELECT id FROM tasks WHERE queue = $1 AND dedupe_key = $2
                 AND state IN ('blocked', 'ready', 'claimed')",
                &[&queue, key],
            )
            .await?;
        if let Some(row) = live {
            return Ok(Pushed {
                id: u(row.get(0)),
                deduplicated: true,
            });
        }
    }
    let max_attempts = match opts.max_attempts {
        0 => tx.opts.default_max_attempts,
        n => n,
    } as i64;
    let not_before = tx.now.saturating_add(opts.delay_ms);
    let why = (state == TaskState::Cancelled).then_some("a dependency had already failed");
    let row = tx
        .query_one(
            "INSERT INTO tasks (queue, payload, state, priority, max_attempts, not_before,
                                dedupe_key, last_error, created_at, updated_at, pending_deps)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
            &[
                &queue,
                &payload,
                &state.as_str(),
                &(opts.priority as i64),
                &max_attempts,
                &i(not_before),
                &opts.dedupe_key,
                &why,
                &i(tx.now),
                &pending,
            ],
        )
        .await?;
    let id: i64 = row.get(0);
    if !deps.is_empty() {
        tx.query(
            "INSERT INTO task_deps (task, depends_on) SELECT $1, unnest($2::int8[])",
            &[&id, &deps],
        )
        .await?;
    }
    tx.record(
        agent,
        events::task_pushed(
            id,
            queue,
            state,
            opts.priority,
            not_before,
            &opts.depends_on,
        ),
    );
    Ok(Pushed {
        id: u(id),
        deduplicated: false,
    })
}

pub(crate) async fn claim(
    tx: &mut PgTx<'_>,
    agent: &str,
    queue: &str,
    lease_ms: u64,
) -> EnvResult<Option<Claimed>> {
    requeue_expired(tx, Some(&[queue.to_owned()])).await?;
    let expires = tx.now.saturating_add(lease_ms);
    let row = tx
        .query_opt(
            "UPDATE tasks SET state = 'claimed', attempts = attempts + 1, claimed_by = $3,
                 claim_token = nextval('fence'), claim_expires = $4, updated_at = $2
             WHERE id = (SELECT id FROM tasks
                         WHERE state = 'ready' AND queue = $1 AND not_before <= $2
                         ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id, payload, attempts, claim_token",
            &[&queue, &i(tx.now), &agent, &i(expires)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (id, attempt, token) = (u(row.get(0)), u(row.get(2)) as u32, u(row.get(3)));
    tx.record(
        agent,
        events::task_claimed(id, queue, attempt, token, expires),
    );
    Ok(Some(Claimed {
        id,
        queue: queue.to_owned(),
        payload: row.get(1),
        attempt,
        token,
        lease_expires_at: expires,
    }))
}

/// Finish a task `agent` holds with `token`.
pub(crate) async fn complete(
    tx: &mut PgTx<'_>,
    agent: &str,
    id: u64,
    token: u64,
    result: &str,
) -> EnvResult<()> {
    guard(tx, agent, id, token).await?;
    tx.query(
        "UPDATE tasks SET state = 'done', result = $1, claimed_by = NULL,
             claim_token = NULL, claim_expires = NULL, updated_at = $2 WHERE id = $3",
        &[&result, &i(tx.now), &i(id)],
    )
    .await?;
    tx.record(agent, events::task_completed(id, token));
    unblock_dependents(tx, id).await
}

/// What a guarded operation learns about the claim it holds.
struct Held {
    attempts: u32,
    max_attempts: u32,
}

/// Check that `agent` holds task `id` with `token` and the claim has not
/// lapsed, locking the task's row until the transaction ends.
async fn guard(tx: &mut PgTx<'_>, agent: &str, id: u64, token: u64) -> EnvResult<Held> {
    let row = tx
        .query_opt(
            "SELECT state, claimed_by, claim_token, claim_expires, attempts, max_attempts
             FROM tasks WHERE id = $1 FOR UPDATE",
            &[&i(id)],
        )
        .await?;
    let Some(r) = row else {
        return Err(EnvError::not_found(format!("task {id} does not exist")));
    };
    let current = r.get::<_, &str>(0) == "claimed"
        && r.get::<_, Option<&str>>(1) == Some(agent)
        && r.get::<_, Option<i64>>(2) == Some(i(token))
        && r.get::<_, Option<i64>>(3).is_some_and(|e| u(e) > tx.now);
    if !current {
        return Err(EnvError::StaleToken(token));
    }
    Ok(Held {
        attempts: u(r.get(4)) as u32,
        max_attempts: u(r.get(5)) as u32,
    })
}

/// After an attempt that failed at `failed_at`: back to ready after a
/// backoff counted from then, or dead.
async fn retry_or_die(
    tx: &mut PgTx<'_>,
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
        tx.query(
            "UPDATE tasks SET state = 'ready', not_before = $1, last_error = $2,
                 claimed_by = NULL, claim_token = NULL, claim_expires = NULL, updated_at = $3
             WHERE id = $4",
            &[&i(not_before), &error, &i(tx.now), &i(id)],
        )
        .await?;
        let queue: String = tx
            .query_one("SELECT queue FROM tasks WHERE id = $1", &[&i(id)])
            .await?
            .get(0);
        tx.record(
            agent,
            events::task_retried(id, &queue, held.attempts, not_before, error),
        );
        return Ok(());
    }
    tx.query(
        "UPDATE tasks SET state = 'dead', last_error = $1, claimed_by = NULL,
             claim_token = NULL, claim_expires = NULL, updated_at = $2 WHERE id = $3",
        &[&error, &i(tx.now), &i(id)],
    )
    .await?;
    tx.record(agent, events::task_dead(id, held.attempts, error));
    cascade_cancel(tx, id).await
}

/// Cancel every blocked task that (transitively) depends on `id`.
async fn cascade_cancel(tx: &mut PgTx<'_>, id: u64) -> EnvResult<()> {
    let mut stack = vec![id];
    while let Some(failed) = stack.pop() {
        let why = format!("task {failed}, which it depends on, did not finish");
        let rows = tx
            .query(
                "UPDATE tasks SET state = 'cancelled', last_error = $2, updated_at = $3
                 WHERE state = 'blocked'
                   AND id IN (SELECT task FROM task_deps WHERE depends_on = $1)
                 RETURNING id",
                &[&i(failed), &why, &i(tx.now)],
            )
            .await?;
        let mut cancelled: Vec<u64> = rows.iter().map(|r| u(r.get(0))).collect();
        cancelled.sort_unstable();
        for dep in cancelled {
            tx.record("env", events::task_cancelled(dep, failed));
            stack.push(dep);
        }
    }
    Ok(())
}

/// Count `done` off its blocked dependents; those with nothing left to wait
/// for become ready. The decrement is one `UPDATE`, so dependencies that
/// finish at once in two transactions serialize on the dependent's row.
async fn unblock_dependents(tx: &mut PgTx<'_>, done: u64) -> EnvResult<()> {
    let rows = tx
        .query(
            "UPDATE tasks SET pending_deps = pending_deps - 1,
                 state = CASE WHEN pending_deps <= 1 THEN 'ready' ELSE state END,
                 updated_at = CASE WHEN pending_deps <= 1 THEN $2 ELSE updated_at END
             WHERE state = 'blocked'
               AND id IN (SELECT task FROM task_deps WHERE depends_on = $1)
             RETURNING id, state, queue",
            &[&i(done), &i(tx.now)],
        )
        .await?;
    let mut ready: Vec<(u64, String)> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(1) == "ready")
        .map(|r| (u(r.get(0)), r.get(2)))
        .collect();
    ready.sort_unstable();
    for (id, queue) in ready {
        tx.record("env", events::task_ready(id, &queue, done));
    }
    Ok(())
}

/// Claims lapsed by `$1` in the queues `$2` (every queue when null), for
/// [`requeue_lapsed`]; rows another transaction holds are left to it.
pub(crate) const LAPSED: &str = "SELECT id, attempts, max_attempts, claim_expires FROM tasks
     WHERE state = 'claimed' AND claim_expires <= $1 AND ($2::text[] IS NULL OR queue = ANY($2))
     ORDER BY claim_expires, id FOR UPDATE SKIP LOCKED";

/// Put back tasks whose claim lapsed (in `queues`, or everywhere). Rows
/// another transaction holds are left to it.
pub(crate) async fn requeue_expired(
    tx: &mut PgTx<'_>,
    queues: Option<&[String]>,
) -> EnvResult<u64> {
    let rows = tx.query(LAPSED, &[&i(tx.now), &queues]).await?;
    requeue_lapsed(tx, &rows).await?;
    Ok(rows.len() as u64)
}

/// Put back the lapsed claims in `rows` (id, attempts, max attempts, when
/// the claim lapsed; locked by this transaction).
pub(crate) async fn requeue_lapsed(tx: &mut PgTx<'_>, rows: &[Row]) -> EnvResult<()> {
    for r in rows {
        let held = Held {
            attempts: u(r.get(1)) as u32,
            max_attempts: u(r.get(2)) as u32,
        };
        let why = "the claim lapsed (visibility timeout)";
        retry_or_die(tx, "env", u(r.get(0)), &held, why, true, u(r.get(3))).await?;
    }
    Ok(())
}

/// Put back every task claimed by `agent`. When the agent `failed` (crashed
/// or returned an error) the attempt counts, with backoff; when it was
/// stopped from outside, the task goes back at once and the attempt is
/// given back, so a shutdown never uses up a task's attempts.
pub(crate) async fn requeue_agent(
    tx: &mut PgTx<'_>,
    agent: &str,
    why: &str,
    failed: bool,
) -> EnvResult<u64> {
    let rows = tx
        .query(
            "SELECT id, attempts, max_attempts, queue FROM tasks
             WHERE state = 'claimed' AND claimed_by = $1 ORDER BY id FOR UPDATE",
            &[&agent],
        )
        .await?;
    for r in &rows {
        let id = u(r.get(0));
        if !failed {
            tx.query(
                "UPDATE tasks SET state = 'ready', attempts = greatest(attempts - 1, 0),
                     not_before = $1, last_error = $2, claimed_by = NULL,
                     claim_token = NULL, claim_expires = NULL, updated_at = $1
                 WHERE id = $3",
                &[&i(tx.now), &why, &i(id)],
            )
            .await?;
            tx.record("env", events::task_returned(id, r.get(3), why));
            continue;
        }
        let held = Held {
            attempts: u(r.get(1)) as u32,
            max_attempts: u(r.get(2)) as u32,
        };
        let now = tx.now;
        retry_or_die(tx, "env", id, &held, why, true, now).await?;
    }
    Ok(rows.len() as u64)
}

const TASK_COLUMNS: &str = "SELECT id, queue, payload, state, priority, attempts, max_attempts,
    not_before, dedupe_key, claimed_by, result, last_error, created_at, updated_at,
    claim_expires,
    array(SELECT depends_on FROM task_deps d WHERE d.task = t.id ORDER BY depends_on)
    FROM tasks t";

fn task_row(r: &Row) -> Task {
    Task {
        id: u(r.get(0)),
        queue: r.get(1),
        payload: r.get(2),
        state: TaskState::parse(r.get(3)).unwrap_or(TaskState::Ready),
        priority: r.get::<_, i64>(4) as i32,
        attempts: u(r.get(5)) as u32,
        max_attempts: u(r.get(6)) as u32,
        not_before: u(r.get(7)),
        dedupe_key: r.get(8),
        depends_on: r.get::<_, Vec<i64>>(15).into_iter().map(u).collect(),
        claimed_by: r.get(9),
        claim_expires_at: r.get::<_, Option<i64>>(14).map(u),
        result: r.get(10),
        last_error: r.get(11),
        created_at: u(r.get(12)),
        updated_at: u(r.get(13)),
    }
}

impl PgStore {
    pub(crate) async fn push(
        &self,
        agent: &str,
        queue: &str,
        payload: &str,
        opts: PushOptions,
    ) -> EnvResult<Pushed> {
        if hot::push_is_hot(&opts) {
            let (job, answer) = Hot::push(agent, queue, payload, opts);
            return self.send_and_wait(job, answer).await;
        }
        let (agent, queue, payload) = (agent.to_owned(), queue.to_owned(), payload.to_owned());
        self.write(async move |tx| push(tx, &agent, &queue, &payload, &opts).await)
            .await
    }

    pub(crate) async fn claim_once(
        &self,
        agent: &str,
        queue: &str,
        lease_ms: u64,
    ) -> EnvResult<Option<Claimed>> {
        let (job, answer) = Hot::claim(agent, queue, lease_ms);
        self.send_and_wait(job, answer).await
    }

    /// Whether a task of `queue` is claimable now, else when one may next be.
    pub(crate) async fn next_due(&self, queue: &str) -> EnvResult<(bool, Option<u64>)> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = $2 AND state = 'ready'
                                AND not_before <= {READ_NOW})
                 OR EXISTS (SELECT 1 FROM tasks WHERE queue = $2 AND state = 'claimed'
                                AND claim_expires <= {READ_NOW}),
                    least((SELECT min(not_before) FROM tasks WHERE queue = $2 AND state = 'ready'),
                          (SELECT min(claim_expires) FROM tasks WHERE queue = $2 AND state = 'claimed'))"
        );
        let row = self
            .query_one(&sql, &[&self.injected_now(), &queue])
            .await?;
        Ok((row.get(0), row.get::<_, Option<i64>>(1).map(u)))
    }

    pub(crate) async fn complete(
        &self,
        agent: &str,
        id: u64,
        token: u64,
        result: &str,
    ) -> EnvResult<()> {
        let (job, answer) = Hot::complete(agent, id, token, result);
        self.send_and_wait(job, answer).await
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
        self.write(async move |tx| {
            let held = guard(tx, &agent, id, token).await?;
            let now = tx.now;
            retry_or_die(tx, &agent, id, &held, &error, retry, now).await
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
        self.write(async move |tx| {
            guard(tx, &agent, id, token).await?;
            let expires = tx.now.saturating_add(lease_ms);
            tx.query(
                "UPDATE tasks SET claim_expires = $1, updated_at = $2 WHERE id = $3",
                &[&i(expires), &i(tx.now), &i(id)],
            )
            .await?;
            tx.record(&agent, events::task_extended(id, expires));
            Ok(expires)
        })
        .await
    }

    pub(crate) async fn get_task(&self, id: u64) -> EnvResult<Option<Task>> {
        let sql = format!("{TASK_COLUMNS} WHERE id = $1");
        let rows = self.query(&sql, &[&i(id)]).await?;
        Ok(rows.first().map(task_row))
    }

    pub(crate) async fn list_tasks(
        &self,
        queue: Option<&str>,
        state: Option<TaskState>,
        limit: u32,
    ) -> EnvResult<Vec<Task>> {
        self.tasks_page(&TaskQuery {
            queue: queue.map(str::to_owned),
            state,
            limit,
            ..TaskQuery::default()
        })
        .await
    }

    pub(crate) async fn tasks_page(&self, q: &TaskQuery) -> EnvResult<Vec<Task>> {
        let sql = format!(
            "{TASK_COLUMNS} WHERE id > $1 AND ($2::text IS NULL OR queue = $2)
               AND ($3::text IS NULL OR state = $3)
               AND ($4::text IS NULL OR (state = 'claimed' AND claimed_by = $4))
             ORDER BY id LIMIT $5"
        );
        let rows = self
            .query(
                &sql,
                &[
                    &i(q.after),
                    &q.queue,
                    &q.state.map(TaskState::as_str),
                    &q.claimed_by,
                    &(q.limit as i64),
                ],
            )
            .await?;
        Ok(rows.iter().map(task_row).collect())
    }

    pub(crate) async fn task_links(&self, id: u64, limit: u32) -> EnvResult<TaskLinks> {
        let node = |r: &Row| TaskRef {
            id: u(r.get(0)),
            queue: r.get(1),
            state: TaskState::parse(r.get(2)).unwrap_or(TaskState::Ready),
        };
        let depends_on = self
            .query(
                "SELECT t.id, t.queue, t.state FROM task_deps d JOIN tasks t ON t.id = d.depends_on
                 WHERE d.task = $1 ORDER BY d.depends_on",
                &[&i(id)],
            )
            .await?;
        let dependents = self
            .query(
                "SELECT t.id, t.queue, t.state FROM task_deps d JOIN tasks t ON t.id = d.task
                 WHERE d.depends_on = $1 ORDER BY d.task LIMIT $2",
                &[&i(id), &(limit as i64)],
            )
            .await?;
        Ok(TaskLinks {
            depends_on: depends_on.iter().map(node).collect(),
            dependents: dependents.iter().map(node).collect(),
        })
    }

    pub(crate) async fn retry_task(&self, who: &str, id: u64) -> EnvResult<()> {
        let who = who.to_owned();
        self.write(async move |tx| {
            let sql = format!("{TASK_COLUMNS} WHERE id = $1 FOR UPDATE");
            let rows = tx.query(&sql, &[&i(id)]).await?;
            let task = rows
                .first()
                .map(task_row)
                .ok_or_else(|| EnvError::not_found(format!("task {id} does not exist")))?;
            // Locked (as push locks them) so none can finish before this
            // task is counted as waiting for it again.
            let deps = tx
                .query(
                    "SELECT id, state FROM tasks WHERE id = ANY($1) ORDER BY id FOR SHARE",
                    &[&task.depends_on.iter().map(|d| i(*d)).collect::<Vec<_>>()],
                )
                .await?
                .iter()
                .map(|r| {
                    (
                        u(r.get(0)),
                        TaskState::parse(r.get(1)).unwrap_or(TaskState::Ready),
                    )
                })
                .collect::<Vec<_>>();
            let live_twin = match &task.dedupe_key {
                Some(key) => tx
                    .query(
                        "SELECT id FROM tasks WHERE queue = $1 AND dedupe_key = $2
                         AND state IN ('blocked', 'ready', 'claimed')",
                        &[&task.queue, key],
                    )
                    .await?
                    .first()
                    .map(|r| u(r.get(0))),
                None => None,
            };
            let state = requeue_state(&task, &deps, live_twin)?;
            // A blocked task becomes ready when its count of unfinished
            // dependencies reaches zero: count them afresh.
            let pending = deps.iter().filter(|(_, s)| *s != TaskState::Done).count() as i64;
            tx.query(
                "UPDATE tasks SET state = $1, attempts = 0, not_before = $2, claimed_by = NULL,
                     claim_token = NULL, claim_expires = NULL, updated_at = $2, pending_deps = $4
                 WHERE id = $3",
                &[&state.as_str(), &i(tx.now), &i(id), &pending],
            )
            .await?;
            tx.record(
                &who,
                events::task_requeued(id, &task.queue, &who, task.state, state),
            );
            Ok(())
        })
        .await
    }

    pub(crate) async fn cancel_task(&self, who: &str, id: u64) -> EnvResult<()> {
        let who = who.to_owned();
        self.write(async move |tx| {
            let rows = tx
                .query(
                    "SELECT state FROM tasks WHERE id = $1 FOR UPDATE",
                    &[&i(id)],
                )
                .await?;
            let was = rows
                .first()
                .map(|r| TaskState::parse(r.get(0)).unwrap_or(TaskState::Ready))
                .ok_or_else(|| EnvError::not_found(format!("task {id} does not exist")))?;
            if was.is_final() {
                return Err(refuse_action("cancelled", id, was));
            }
            tx.query(
                "UPDATE tasks SET state = 'cancelled', last_error = $1, claimed_by = NULL,
                     claim_token = NULL, claim_expires = NULL, updated_at = $2 WHERE id = $3",
                &[&format!("cancelled by {who}"), &i(tx.now), &i(id)],
            )
            .await?;
            tx.record(&who, events::task_cancelled_by(id, &who, was));
            cascade_cancel(tx, id).await
        })
        .await
    }
}
