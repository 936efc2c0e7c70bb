//! Who runs where, as every backend records it: hosts and their heartbeats,
//! agents and how they ended (their leases released, their tasks put back),
//! the sweeper that reaps silent hosts, and counts for progress displays.

use super::limits::check_name;
use super::{AgentEnd, AgentId, AgentInfo, Env, EnvResult, HostInfo, Stats, Swept, WorkCounts};

impl Env {
    /// Record this host process; returns its id (unique for the life of the environment).
    pub async fn register_host(&self, hostname: &str, pid: u32, ttl_ms: u64) -> EnvResult<String> {
        store!(self, s => s.register_host(hostname, pid, ttl_ms).await)
    }

    /// A host's sign of life: heartbeat the host and its running agents, and
    /// renew every live lease of those agents to its full ttl from now (the
    /// keepalive that keeps a long job from losing its lease). Returns the
    /// shortest ttl among those leases, so the host knows how soon to come
    /// back. Fails with `NotFound` once the host was reaped. Liveness is not
    /// journaled: it changes nothing others act on.
    pub async fn keepalive(&self, host: &str) -> EnvResult<Option<u64>> {
        store!(self, s => s.keepalive(host).await)
    }

    /// Record that the host gave up restarting `agent` (a crash loop): it
    /// stays ended, marked failed, with `reason`.
    pub async fn agent_gave_up(&self, agent: &AgentId, reason: &str) -> EnvResult<()> {
        store!(self, s => s.agent_gave_up(agent.as_str(), reason).await)
    }

    /// Record that `host` stopped cleanly, ending its agents as stopped.
    pub async fn host_stopped(&self, host: &str) -> EnvResult<()> {
        store!(self, s => s.host_stopped(host).await)
    }

    /// Record that agent `name` replica `replica` of module `digest` starts on
    /// `host`; returns its identity `name.replica@host`. A restart keeps the
    /// identity and counts the restart.
    pub async fn agent_started(
        &self,
        host: &str,
        name: &str,
        replica: u32,
        digest: &str,
    ) -> EnvResult<AgentId> {
        check_name("agent name", name, self.options())?;
        store!(self, s => s.agent_started(host, name, replica, digest).await)
    }

    /// Record how `agent` ended; releases its leases and puts its claimed tasks
    /// back at once. Ending an agent that is not running changes nothing.
    pub async fn agent_ended(&self, agent: &AgentId, end: AgentEnd, reason: &str) -> EnvResult<()> {
        store!(self, s => s.agent_ended(agent.as_str(), end, reason).await)
    }

    /// Reap hosts silent past their ttl, expire leases and lapsed claims,
    /// prune events past retention, and checkpoint SQLite's write-ahead log.
    /// Expired leases never block anyone even before a sweep; the sweep
    /// journals their end and puts lapsed tasks back.
    pub async fn sweep(&self) -> EnvResult<Swept> {
        let mut swept = store!(self, s => s.sweep().await)?;
        swept.events_pruned = self.prune_events().await?;
        self.checkpoint().await?;
        Ok(swept)
    }

    /// Every agent the environment has seen, newest first.
    pub async fn list_agents(&self) -> EnvResult<Vec<AgentInfo>> {
        store!(self, s => s.list_agents().await)
    }

    /// Every host the environment has seen, newest first.
    pub async fn list_hosts(&self) -> EnvResult<Vec<HostInfo>> {
        store!(self, s => s.list_hosts().await)
    }

    /// Tasks per state and live leases: cheap, for progress displays.
    pub async fn work_counts(&self) -> EnvResult<WorkCounts> {
        store!(self, s => s.work_counts().await)
    }

    /// How many reservations have queued behind a conflict since the
    /// environment was created.
    pub async fn reservations_queued(&self) -> EnvResult<u64> {
        store!(self, s => s.reservations_queued().await)
    }

    /// Row counts per table and state, read in one consistent snapshot.
    pub async fn stats(&self) -> EnvResult<Stats> {
        store!(self, s => s.stats().await)
    }
}
