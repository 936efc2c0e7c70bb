//! The values environment operations take and return, independent of storage.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// The identity of a caller, assigned by the host (never chosen by a guest).
///
/// Every write is attributed to it, and leases and claims can only be used by
/// the identity that obtained them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AgentId(Arc<str>);

impl AgentId {
    /// An identity with the given name, as the host assigns it.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The identity of a person feeding the environment from the command line.
    pub fn operator() -> Self {
        Self::new("operator")
    }

    /// The identity the environment itself uses for expiry and sweeps.
    pub fn system() -> Self {
        Self::new("env")
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a resource is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No one else may hold an overlapping resource.
    Exclusive,
    /// Others may share it; an exclusive holder may not.
    Shared,
}

impl Mode {
    /// The mode's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
    pub(crate) fn parse(s: &str) -> Mode {
        if s == "shared" {
            Mode::Shared
        } else {
            Mode::Exclusive
        }
    }
}

/// A granted reservation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lease {
    /// Used to renew or release it.
    pub id: u64,
    /// All resources granted.
    pub resources: Vec<String>,
    /// How they are held.
    pub mode: Mode,
    /// The fencing token of this grant.
    pub token: u64,
    /// When the lease ends unless renewed (ms since the epoch).
    pub expires_at: u64,
}

/// One live resource holding, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holding {
    /// The lease it belongs to.
    pub lease: u64,
    /// Who holds it.
    pub holder: String,
    /// The resource.
    pub resource: String,
    /// How it is held.
    pub mode: Mode,
    /// The lease's fencing token.
    pub token: u64,
    /// When the lease ends unless renewed.
    pub expires_at: u64,
}

/// Options for pushing a task; `Default` gives priority 0, no delay, the
/// environment's default attempts, no dedupe key and no dependencies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushOptions {
    /// Higher runs first.
    pub priority: i32,
    /// Not claimable before this many ms from now.
    pub delay_ms: u64,
    /// Attempts before the task is dead (0: the environment default).
    pub max_attempts: u32,
    /// Returns the live task with this key in the same queue instead of a new one.
    pub dedupe_key: Option<String>,
    /// Tasks that must be done first.
    pub depends_on: Vec<u64>,
}

/// The outcome of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The task's id.
    pub id: u64,
    /// True when an existing live task with the same dedupe key was returned.
    pub deduplicated: bool,
}

/// A task the caller now holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claimed {
    /// The task.
    pub id: u64,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: String,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// Present it to complete, fail or extend.
    pub token: u64,
    /// When the claim lapses unless extended.
    pub lease_expires_at: u64,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting for its dependencies.
    Blocked,
    /// Claimable once its not-before time has passed.
    Ready,
    /// Held by an agent.
    Claimed,
    /// Completed.
    Done,
    /// Out of attempts (dead letter).
    Dead,
    /// A dependency died.
    Cancelled,
}

impl TaskState {
    /// Every state, in life order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Blocked,
        TaskState::Ready,
        TaskState::Claimed,
        TaskState::Done,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Blocked => "blocked",
            TaskState::Ready => "ready",
            TaskState::Claimed => "claimed",
            TaskState::Done => "done",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// The state with this name, if any.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task has ended for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Dead | TaskState::Cancelled
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// Its id.
    pub id: u64,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: String,
    /// Its state.
    pub state: TaskState,
    /// Its priority.
    pub priority: i32,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Not claimable before this time.
    pub not_before: u64,
    /// Its dedupe key.
    pub dedupe_key: Option<String>,
    /// The tasks it waits for.
    pub depends_on: Vec<u64>,
    /// The agent holding it, while claimed.
    pub claimed_by: Option<String>,
    /// When the current claim lapses unless extended, while claimed.
    pub claim_expires_at: Option<u64>,
    /// What `complete` returned.
    pub result: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was pushed.
    pub created_at: u64,
    /// When it last changed.
    pub updated_at: u64,
}

/// A recorded learning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Learning {
    /// Its id.
    pub id: u64,
    /// Who recorded it.
    pub author: String,
    /// Its topic.
    pub topic: String,
    /// What was learned.
    pub body: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// When it was recorded.
    pub created_at: u64,
    /// How many other agents endorsed it.
    pub endorsements: u32,
    /// The rank a search gave it (0 outside searches).
    pub score: f64,
}

/// A trail and its strength at read time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrailStrength {
    /// The trail.
    pub trail: String,
    /// Its decayed strength now.
    pub strength: f64,
    /// Its half-life (ms): how fast it fades from `strength`.
    pub half_life_ms: u64,
}

/// A shared value and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Versioned {
    /// The value.
    pub value: String,
    /// 1 for the first write, +1 per write.
    pub version: u64,
}

/// A key with its value, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Its version.
    pub version: u64,
    /// The highest fencing token that has written it (0: never fenced).
    pub fence: u64,
    /// Who wrote it last.
    pub updated_by: String,
    /// When.
    pub updated_at: u64,
}

/// One change in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Position in the journal.
    pub seq: u64,
    /// When.
    pub at: u64,
    /// Who made the change.
    pub agent: String,
    /// What happened, e.g. `task.pushed`.
    pub kind: String,
    /// What it happened to, e.g. `task/42`.
    pub subject: String,
    /// Details as a JSON object.
    pub detail: String,
}

/// Which events to return; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Kind prefixes; an event matches if its kind starts with any of them.
    pub kinds: Vec<String>,
    /// Subject prefix.
    pub subject_prefix: String,
    /// Only events made by this agent (exactly).
    pub agent: Option<String>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_parts(&event.agent, &event.kind, &event.subject)
    }

    /// Whether an event by `agent` of `kind` about `subject` passes.
    pub(crate) fn matches_parts(&self, agent: &str, kind: &str, subject: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| kind.starts_with(k.as_str())))
            && subject.starts_with(self.subject_prefix.as_str())
            && self.agent.as_deref().is_none_or(|a| a == agent)
    }
}

/// A running (or ended) agent as the `agents` table records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    /// Its host-assigned id.
    pub id: String,
    /// Its name in the swarm.
    pub name: String,
    /// Which replica.
    pub replica: u32,
    /// The host running it.
    pub host: String,
    /// Digest of its module.
    pub digest: String,
    /// `running`, `exited`, `failed`, `crashed`, `stopped` or `lost`.
    pub state: String,
    /// When it (last) started.
    pub started_at: u64,
    /// Last sign of life: its host's last heartbeat while it runs, when it
    /// ended after.
    pub last_seen: u64,
    /// When it ended.
    pub ended_at: Option<u64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// How often it was restarted.
    pub restarts: u32,
}

/// How an agent ended, as recorded by its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentEnd {
    /// Its `run` returned `ok`.
    Exited,
    /// Its `run` returned an error.
    Failed,
    /// It trapped, panicked or hit a limit.
    Crashed,
    /// Its host stopped it.
    Stopped,
    /// Its host went silent and another host reaped it.
    Lost,
}

impl AgentEnd {
    /// The state name recorded in the `agents` table.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentEnd::Exited => "exited",
            AgentEnd::Failed => "failed",
            AgentEnd::Crashed => "crashed",
            AgentEnd::Stopped => "stopped",
            AgentEnd::Lost => "lost",
        }
    }
}

/// A host process as the `hosts` table records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    /// Its id, unique for the life of the environment.
    pub id: String,
    /// The machine's name.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// When it started.
    pub started_at: u64,
    /// Its last heartbeat.
    pub last_heartbeat: u64,
    /// Silent longer than this, it counts as dead.
    pub ttl_ms: u64,
    /// `alive` or `stopped`.
    pub state: String,
}

/// What work is in hand: tasks per state (every state listed) and live leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkCounts {
    /// Tasks per state, zeros included.
    pub tasks: Vec<(String, u64)>,
    /// Live leases.
    pub leases: u64,
}

impl WorkCounts {
    /// How many tasks are in `state`.
    pub fn tasks_in(&self, state: TaskState) -> u64 {
        self.tasks
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n)
    }
}

/// Row counts per table and state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Tasks per state (every state listed, zeros included).
    pub tasks: Vec<(String, u64)>,
    /// Live leases.
    pub leases: u64,
    /// Agents per state.
    pub agents: Vec<(String, u64)>,
    /// Hosts.
    pub hosts: u64,
    /// Learnings.
    pub learnings: u64,
    /// Signal trails.
    pub signals: u64,
    /// Shared values.
    pub values: u64,
    /// Events kept in the journal.
    pub events: u64,
    /// The newest event's sequence number.
    pub last_seq: u64,
}

/// What [`Env::sweep`](super::Env::sweep) cleaned up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Leases that had expired.
    pub leases_expired: u64,
    /// Claims that had lapsed (their tasks went back or died).
    pub claims_lapsed: u64,
    /// Events deleted for being older than the retention setting.
    pub events_pruned: u64,
    /// Hosts found silent past their ttl and reaped: their agents ended as
    /// lost, their leases released, their claimed tasks put back.
    pub hosts_reaped: u64,
}
