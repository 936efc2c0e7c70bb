//! Looking at an environment from outside, page by page: what the live view
//! (`wawe ui`) and operators read, and the two operator actions on tasks.
//!
//! Every read here is bounded: lists take a cursor and a limit (capped), and
//! a filtered journal read looks at no more than [`MAX_EVENTS_SCANNED`]
//! events before it answers with where it got to.

use serde::Serialize;

use super::limits::check_name;
use super::{
    AgentId, AgentInfo, Env, EnvError, EnvResult, Event, EventFilter, Holding, Mode, Task,
    TaskState, ValueEntry,
};

/// The most rows one page of any list here returns.
pub const MAX_PAGE: u32 = 1_000;

/// The most journal events one filtered read looks at before it answers.
pub const MAX_EVENTS_SCANNED: u64 = 50_000;

/// The most events a task's story holds (its oldest ones).
pub const MAX_STORY: u32 = 10_000;

/// The most journal events a task's story looks through: those written
/// between the task's creation and its last change, oldest first.
pub const MAX_STORY_SCANNED: u64 = 200_000;

/// A task's story: every journal event about it, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Story {
    /// The events whose subject is the task.
    pub events: Vec<Event>,
    /// Whether the story may be longer: more than [`MAX_STORY_SCANNED`]
    /// events were written in the task's lifetime (or it has more than
    /// [`MAX_STORY`]); the journal filtered by its subject has the rest.
    pub cut_short: bool,
}

/// Which tasks a page of tasks holds.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks this agent has claimed now.
    pub claimed_by: Option<String>,
    /// Only ids above this one (the previous page's last id).
    pub after: u64,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// A task named in another's dependencies, as a graph node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRef {
    /// The task's id.
    pub id: u64,
    /// Its queue.
    pub queue: String,
    /// Its state now.
    pub state: TaskState,
}

/// A task's neighbours in the dependency graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskLinks {
    /// The tasks it waits for.
    pub depends_on: Vec<TaskRef>,
    /// The tasks that wait for it (at most [`MAX_PAGE`]).
    pub dependents: Vec<TaskRef>,
}

/// A reservation queued behind a conflict, waiting its turn (FIFO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiter {
    /// Its place: lower ids are served first.
    pub id: u64,
    /// Who waits.
    pub agent: String,
    /// The mode it asked for.
    pub mode: Mode,
    /// The resources it asked for.
    pub resources: Vec<String>,
    /// When it stops waiting (ms since the epoch).
    pub deadline: u64,
}

/// One queue's tasks per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// `(state, count)` for each state with tasks.
    pub states: Vec<(TaskState, u64)>,
}

impl QueueCounts {
    /// How many of this queue's tasks are in `state`.
    pub fn count(&self, state: TaskState) -> u64 {
        self.states
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }
}

/// The whole environment at a glance, read in one snapshot from indexes
/// (never by counting the journal), so a live view can ask after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// Every queue's tasks per state, by queue name.
    pub queues: Vec<QueueCounts>,
    /// Agents per state.
    pub agents: Vec<(String, u64)>,
    /// Live leases.
    pub leases: u64,
    /// Reservations waiting in line.
    pub waiters: u64,
    /// Learnings recorded.
    pub learnings: u64,
    /// Signal trails laid.
    pub signals: u64,
    /// Values set.
    pub values: u64,
    /// Events the journal holds (from its first to its last sequence number).
    pub events: u64,
    /// The newest sequence number handed out.
    pub last_seq: u64,
}

/// A page of the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventPage {
    /// Matching events, in the order read.
    pub events: Vec<Event>,
    /// The last sequence number looked at: continue from here.
    pub scanned_to: u64,
    /// Whether the read stopped before the journal's end (a full page, or
    /// [`MAX_EVENTS_SCANNED`] looked at).
    pub more: bool,
}

/// Which way a journal read goes from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Older events, newest first, before the cursor.
    Back,
    /// Newer events, oldest first, after the cursor.
    Forward,
}

impl Env {
    /// Tasks per queue and state, agents per state and the table sizes.
    pub async fn overview(&self) -> EnvResult<Overview> {
        store!(self, s => s.overview().await)
    }

    /// A page of tasks in id order.
    pub async fn tasks_page(&self, query: &TaskQuery) -> EnvResult<Vec<Task>> {
        let query = TaskQuery {
            limit: query.limit.min(MAX_PAGE),
            ..query.clone()
        };
        store!(self, s => s.tasks_page(&query).await)
    }

    /// The tasks `id` depends on and those depending on it.
    pub async fn task_links(&self, id: u64) -> EnvResult<TaskLinks> {
        store!(self, s => s.task_links(id, MAX_PAGE).await)
    }

    /// Every journal event about task `id` (subject `task/ID`), oldest
    /// first: its story, from push to its end. Found among the events
    /// written in the task's lifetime (through the journal's time index), so
    /// the journal needs no index of subjects that every write would pay for.
    pub async fn task_story(&self, id: u64) -> EnvResult<Story> {
        let task = self.get_task(id).await?;
        let subject = format!("task/{id}");
        let (from, to) = (task.created_at, task.updated_at.max(task.created_at));
        store!(self, s => s.events_about(&subject, from, to, MAX_STORY, MAX_STORY_SCANNED).await)
    }

    /// A page of agents in id order, after `after` (empty: from the start),
    /// optionally only those in `state`.
    pub async fn agents_page(
        &self,
        state: Option<&str>,
        after: &str,
        limit: u32,
    ) -> EnvResult<Vec<AgentInfo>> {
        store!(self, s => s.agents_page(state, after, limit.min(MAX_PAGE)).await)
    }

    /// One agent.
    pub async fn get_agent(&self, id: &str) -> EnvResult<AgentInfo> {
        store!(self, s => s.get_agent(id).await)?
            .ok_or_else(|| EnvError::not_found(format!("agent {id} does not exist")))
    }

    /// A page of live holdings under `prefix` in (resource, lease) order,
    /// after `after`, optionally only those of `holder`.
    pub async fn holdings_page(
        &self,
        prefix: &str,
        holder: Option<&str>,
        after: Option<(&str, u64)>,
        limit: u32,
    ) -> EnvResult<Vec<Holding>> {
        store!(self, s => s.holdings_page(prefix, holder, after, limit.min(MAX_PAGE)).await)
    }

    /// Reservations waiting in line, first in line first.
    pub async fn waiters(&self, limit: u32) -> EnvResult<Vec<Waiter>> {
        store!(self, s => s.waiters(limit.min(MAX_PAGE)).await)
    }

    /// A page of values under `prefix` in key order, after `after`.
    pub async fn values_page(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> EnvResult<Vec<ValueEntry>> {
        store!(self, s => s.values_page(prefix, after, limit.min(MAX_PAGE)).await)
    }

    /// Up to `limit` events matching `filter` from `cursor` in `direction`
    /// (a cursor of 0 going back starts at the newest event), looking at no
    /// more than [`MAX_EVENTS_SCANNED`] events.
    pub async fn events_page(
        &self,
        cursor: u64,
        direction: Direction,
        filter: &EventFilter,
        limit: u32,
    ) -> EnvResult<EventPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let cursor = match (direction, cursor) {
            (Direction::Back, 0) => u64::MAX,
            _ => cursor,
        };
        let mut page = store!(self, s => s.scan_events(cursor, direction, filter, limit, MAX_EVENTS_SCANNED).await)?;
        if page.scanned_to == u64::MAX {
            // Nothing was looked at: an empty journal.
            page.scanned_to = 0;
        }
        Ok(page)
    }

    /// Put a dead or cancelled task back, as `who` (an operator): ready, or
    /// blocked while a dependency is unfinished, its attempts counted from
    /// zero. A task whose dependency is dead or cancelled is refused (retry
    /// that one first).
    pub async fn retry_task(&self, who: &AgentId, id: u64) -> EnvResult<Task> {
        check_name("agent", who.as_str(), self.options())?;
        store!(self, s => s.retry_task(who.as_str(), id).await)?;
        self.get_task(id).await
    }

    /// End a blocked, ready or claimed task as cancelled, as `who` (an
    /// operator); its blocked dependents are cancelled too. A claim on it
    /// is void: its holder's complete or fail is refused.
    pub async fn cancel_task(&self, who: &AgentId, id: u64) -> EnvResult<Task> {
        check_name("agent", who.as_str(), self.options())?;
        store!(self, s => s.cancel_task(who.as_str(), id).await)?;
        self.get_task(id).await
    }
}

/// Why an operator action does not apply to a task in `state`.
pub(crate) fn refuse_action(action: &str, id: u64, state: TaskState) -> EnvError {
    EnvError::invalid(format!(
        "task {id} is {state}: only {} tasks can be {action}",
        match action {
            "retried" => "dead or cancelled",
            _ => "blocked, ready or claimed",
        }
    ))
}

/// The state an operator's retry puts `task` in, given its dependencies'
/// states and a live task with its dedupe key (`live_twin`), or why not.
pub(crate) fn requeue_state(
    task: &Task,
    deps: &[(u64, TaskState)],
    live_twin: Option<u64>,
) -> EnvResult<TaskState> {
    if !matches!(task.state, TaskState::Dead | TaskState::Cancelled) {
        return Err(refuse_action("retried", task.id, task.state));
    }
    if let Some(twin) = live_twin {
        return Err(EnvError::invalid(format!(
            "task {} cannot be retried while task {twin}, with the same dedupe key, is live in {}",
            task.id, task.queue
        )));
    }
    let mut state = TaskState::Ready;
    for &(dep, dep_state) in deps {
        match dep_state {
            TaskState::Done => {}
            TaskState::Dead | TaskState::Cancelled => {
                return Err(EnvError::invalid(format!(
                    "task {} depends on task {dep}, which is {dep_state}: retry task {dep} first",
                    task.id
                )));
            }
            _ => state = TaskState::Blocked,
        }
    }
    Ok(state)
}

/// Fold `(state, queue, count)` rows, sorted by queue, into one
/// [`QueueCounts`] per queue.
pub(crate) fn group_queues(rows: Vec<(String, String, u64)>) -> Vec<QueueCounts> {
    let mut queues: Vec<QueueCounts> = Vec::new();
    for (state, queue, n) in rows {
        let Some(state) = TaskState::parse(&state) else {
            continue;
        };
        match queues.last_mut() {
            Some(q) if q.queue == queue => q.states.push((state, n)),
            _ => queues.push(QueueCounts {
                queue,
                states: vec![(state, n)],
            }),
        }
    }
    queues
}
