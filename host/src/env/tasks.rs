//! Task queues, as every backend offers them: push with priority, delay,
//! dedupe and dependencies; claim (waiting for a task) with a visibility
//! timeout; complete, fail and extend guarded by the claim's fencing token.

use tokio::time::Instant;

use super::limits::{check_count, check_name, check_payload, check_ttl};
use super::wake::{Interest, Woken};
use super::{AgentId, Claimed, Env, EnvError, EnvResult, PushOptions, Pushed, Task, TaskState};

/// Most tasks one listing returns, whatever the limit asked for.
pub const MAX_TASKS_LISTED: u32 = 100_000;

impl Env {
    /// Add a task to `queue`. With a live task of the same dedupe key in the
    /// queue, returns that one (`deduplicated`); with a dependency already
    /// dead or cancelled, the task starts cancelled.
    pub async fn push(
        &self,
        who: &AgentId,
        queue: &str,
        payload: &str,
        opts: PushOptions,
    ) -> EnvResult<Pushed> {
        let limits = self.options();
        check_name("queue name", queue, limits)?;
        check_payload("payload", payload, limits)?;
        if let Some(key) = &opts.dedupe_key {
            check_name("dedupe key", key, limits)?;
        }
        check_count(
            "depends-on list",
            opts.depends_on.len(),
            limits.max_resources,
        )?;
        let mut opts = opts;
        opts.depends_on.sort_unstable();
        opts.depends_on.dedup();
        store!(self, s => s.push(who.as_str(), queue, payload, opts).await)
    }

    /// Take the highest-priority ready task of `queue` (oldest first among
    /// equals) for `lease_ms`, waiting up to `wait_ms` for one.
    pub async fn claim(
        &self,
        who: &AgentId,
        queue: &str,
        lease_ms: u64,
        wait_ms: u64,
    ) -> EnvResult<Option<Claimed>> {
        check_name("queue name", queue, self.options())?;
        check_ttl("claim", lease_ms)?;
        let until = Env::wait_until(wait_ms);
        // Registered before the first look, so that a push landing after it
        // still wakes this claim.
        let waiter =
            (wait_ms > 0).then(|| self.wakes().register(Interest::Queue(queue.to_owned())));
        // The first attempt goes straight to the writer (the common case: a
        // task is there), and so does one woken for a task claimable now.
        // After any other wake (a task due only later, a timer), a read
        // first tells whether anything is claimable, so it costs no write.
        let mut due_now = true;
        loop {
            if let Some(w) = &waiter {
                w.settle();
            }
            if due_now {
                let claimed = store!(self, s => s.claim_once(who.as_str(), queue, lease_ms).await)?;
                if claimed.is_some() {
                    return Ok(claimed);
                }
            }
            let Some(waiter) = &waiter else {
                return Ok(None);
            };
            if Instant::now() >= until {
                return Ok(None);
            }
            let later;
            (due_now, later) = store!(self, s => s.next_due(queue).await)?;
            if due_now {
                continue;
            }
            let wake = later
                .filter(|&at| at > self.now_ms())
                .map_or(until, |at| self.instant_at(at).min(until));
            // Woken for a task claimable now: straight to the writer.
            due_now = waiter.wake_before(wake).await == Woken::Claimable;
        }
    }

    /// Finish a task the caller holds with `token`.
    pub async fn complete(
        &self,
        who: &AgentId,
        id: u64,
        token: u64,
        result: &str,
    ) -> EnvResult<()> {
        check_payload("result", result, self.options())?;
        store!(self, s => s.complete(who.as_str(), id, token, result).await)
    }

    /// Give up on a task the caller holds: retried after a backoff while
    /// attempts remain and `retry` is set, else dead.
    pub async fn fail(
        &self,
        who: &AgentId,
        id: u64,
        token: u64,
        error: &str,
        retry: bool,
    ) -> EnvResult<()> {
        check_payload("error", error, self.options())?;
        store!(self, s => s.fail(who.as_str(), id, token, error, retry).await)
    }

    /// Extend the caller's claim on a task to `lease_ms` from now; returns the new expiry.
    pub async fn extend(
        &self,
        who: &AgentId,
        id: u64,
        token: u64,
        lease_ms: u64,
    ) -> EnvResult<u64> {
        check_ttl("claim", lease_ms)?;
        store!(self, s => s.extend(who.as_str(), id, token, lease_ms).await)
    }

    /// Look a task up.
    pub async fn get_task(&self, id: u64) -> EnvResult<Task> {
        store!(self, s => s.get_task(id).await)?
            .ok_or_else(|| EnvError::not_found(format!("task {id} does not exist")))
    }

    /// Tasks in id order, optionally only of `queue` and/or in `state`, at most `limit`.
    pub async fn list_tasks(
        &self,
        queue: Option<&str>,
        state: Option<TaskState>,
        limit: u32,
    ) -> EnvResult<Vec<Task>> {
        let limit = limit.min(MAX_TASKS_LISTED);
        store!(self, s => s.list_tasks(queue, state, limit).await)
    }
}
