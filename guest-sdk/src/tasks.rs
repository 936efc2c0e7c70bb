//! Durable task queues: push work, claim it, and complete or fail it with the claim's token.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wawe::env::tasks as raw;
use crate::{Result, Timestamp, Token, millis};

pub use raw::{Pushed, Task as TaskInfo, TaskState};

/// How to push a task: priority, delay, attempts, dedupe key, dependencies.
///
/// The defaults (from [`PushOptions::new`]) are: priority 0, claimable at once,
/// the environment's default attempts, no dedupe key, no dependencies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOptions {
    priority: i32,
    delay: Duration,
    max_attempts: u32,
    dedupe_key: Option<String>,
    depends_on: Vec<u64>,
}

impl PushOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Higher runs first; equal priorities run oldest first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not claimable until `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Attempts before the task is dead (0: the environment's default).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// While a live task with this key is in the queue, pushing again returns it instead.
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// Adds tasks that must all be done before this one is ready.
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.depends_on.extend(ids);
        self
    }

    /// Converts to the WIT record.
    fn to_raw(&self) -> raw::PushOptions {
        raw::PushOptions {
            priority: self.priority,
            delay_ms: millis(self.delay),
            max_attempts: self.max_attempts,
            dedupe_key: self.dedupe_key.clone(),
            depends_on: self.depends_on.clone(),
        }
    }
}

/// Adds a task with `payload` to `queue`.
///
/// Fails with [`Error::NotFound`](crate::Error::NotFound) for an unknown
/// dependency and [`Error::TooLarge`](crate::Error::TooLarge) for an oversized payload.
pub fn push(queue: &str, payload: &str, options: PushOptions) -> Result<Pushed> {
    Ok(raw::push(queue, payload, &options.to_raw())?)
}

/// Adds a task whose payload is `value` as JSON.
pub fn push_json<T: Serialize + ?Sized>(
    queue: &str,
    value: &T,
    options: PushOptions,
) -> Result<Pushed> {
    push(queue, &serde_json::to_string(value)?, options)
}

/// Takes the highest-priority ready task of `queue` for `lease`, waiting up to
/// `wait` for one (zero: not at all); `None` when the wait ends empty.
pub fn claim(queue: &str, lease: Duration, wait: Duration) -> Result<Option<Task>> {
    Ok(raw::claim(queue, millis(lease), millis(wait))?.map(|claimed| Task { claimed }))
}

/// Like [`claim`], and decodes the payload as JSON into a `T`.
///
/// A payload that does not decode will never decode: the task is failed
/// without retry (so it ends dead, with the reason) and the JSON error returned.
pub fn claim_json<T: DeserializeOwned>(
    queue: &str,
    lease: Duration,
    wait: Duration,
) -> Result<Option<(Task, T)>> {
    let Some(task) = claim(queue, lease, wait)? else {
        return Ok(None);
    };
    match task.json() {
        Ok(value) => Ok(Some((task, value))),
        Err(error) => {
            // Best effort: the decode error is what the caller needs to see.
            let _ = task.fail(&format!("payload does not decode: {error}"), false);
            Err(error)
        }
    }
}

/// Everything known about task `id`, in any state. Fails with
/// [`Error::NotFound`](crate::Error::NotFound).
pub fn get(id: u64) -> Result<TaskInfo> {
    Ok(raw::get(id)?)
}

impl TaskState {
    /// True once the task can never run again: done, dead or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Dead | TaskState::Cancelled
        )
    }
}

/// A task this agent has claimed; finish it with [`Task::complete`] or
/// [`Task::fail`], which consume it (as [`LeaseGuard::release`](crate::reservations::LeaseGuard::release) does a lease).
///
/// Dropping an unfinished task does nothing: the claim lapses at its lease
/// expiry (or when the agent ends) and the task goes back to the queue.
#[derive(Debug)]
pub struct Task {
    claimed: raw::Claimed,
}

impl Task {
    /// The task id.
    pub fn id(&self) -> u64 {
        self.claimed.id
    }

    /// The queue it was claimed from.
    pub fn queue(&self) -> &str {
        &self.claimed.queue
    }

    /// The payload, as pushed.
    pub fn payload(&self) -> &str {
        &self.claimed.payload
    }

    /// Which attempt this is: 1 the first time.
    pub fn attempt(&self) -> u32 {
        self.claimed.attempt
    }

    /// The claim's fencing token (the SDK presents it on complete, fail and extend).
    pub fn token(&self) -> Token {
        self.claimed.token
    }

    /// When the claim lapses unless extended, in ms since the Unix epoch (host clock).
    pub fn lease_expires_at(&self) -> Timestamp {
        self.claimed.lease_expires_at
    }

    /// The payload decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(&self.claimed.payload)?)
    }

    /// Finishes the task with `result`, ending the claim. Fails with
    /// [`Error::StaleToken`](crate::Error::StaleToken) if the claim is no longer ours.
    pub fn complete(self, result: &str) -> Result<()> {
        Ok(raw::complete(self.id(), self.token(), result)?)
    }

    /// Finishes the task with `value` as JSON.
    pub fn complete_json<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.complete(&serde_json::to_string(value)?)
    }

    /// Gives up on the task: with `retry` it goes back after a backoff (until
    /// its attempts run out), without it is dead at once. Ends the claim.
    pub fn fail(self, reason: &str, retry: bool) -> Result<()> {
        Ok(raw::fail(self.id(), self.token(), reason, retry)?)
    }

    /// Extends the claim to `lease` from now; returns the new expiry.
    pub fn extend(&mut self, lease: Duration) -> Result<Timestamp> {
        let expires_at = raw::extend(self.id(), self.token(), millis(lease))?;
        self.claimed.lease_expires_at = expires_at;
        Ok(expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_the_wit_record() {
        let raw = PushOptions::new()
            .priority(-2)
            .delay(Duration::from_millis(1500))
            .max_attempts(3)
            .dedupe_key("leaf/1")
            .depends_on([4, 5])
            .depends_on([6])
            .to_raw();
        assert_eq!(raw.priority, -2);
        assert_eq!(raw.delay_ms, 1500);
        assert_eq!(raw.max_attempts, 3);
        assert_eq!(raw.dedupe_key.as_deref(), Some("leaf/1"));
        assert_eq!(raw.depends_on, [4, 5, 6]);
    }

    #[test]
    fn final_states() {
        assert!(TaskState::Done.is_final());
        assert!(TaskState::Dead.is_final());
        assert!(TaskState::Cancelled.is_final());
        assert!(!TaskState::Ready.is_final());
        assert!(!TaskState::Blocked.is_final());
        assert!(!TaskState::Claimed.is_final());
    }
}
