//! What one agent may use: memory, tables, instances, CPU and wall-clock
//! time, and its quotas on the environment (calls per second, and writes,
//! task pushes and learnings per run).

use std::time::Duration;

use super::caps::http::HttpLimits;
use super::caps::workspace::WorkspaceLimits;

/// Per-agent limits, set in the swarm manifest; every field has a sane default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, in bytes, summed over the agent's memories.
    pub memory_bytes: u64,
    /// Table elements per table.
    pub table_elements: u64,
    /// Core instances, tables and memories the component may create.
    pub instances: u32,
    /// CPU time the agent may spend per run, counted in epoch ticks of
    /// [`EPOCH_TICK`] (so with that granularity). `None`: unlimited.
    pub cpu: Option<Duration>,
    /// Wall-clock time one run may last. `None`: unlimited.
    pub wall: Option<Duration>,
    /// Environment calls per second (any `wawe:env` import, logging
    /// included), with a burst of one second's worth; a faster agent is
    /// throttled: its calls wait, others' do not. 0: unlimited.
    pub calls_per_second: u32,
    /// Writes (calls that change the environment) one run may make before it
    /// is stopped. `None`: unlimited.
    pub max_writes: Option<u64>,
    /// Tasks one run may push before it is stopped. `None`: unlimited.
    pub max_pushes: Option<u64>,
    /// Learnings one run may record before it is stopped. `None`: unlimited.
    pub max_learnings: Option<u64>,
    /// Bytes one run may write to the workspace before it is stopped.
    /// `None`: unlimited.
    pub max_written_bytes: Option<u64>,
    /// The workspace's per-write and per-directory limits.
    pub workspace: WorkspaceLimits,
    /// Timeouts and size caps of outbound HTTP requests.
    pub http: HttpLimits,
}

/// How often the engine's epoch advances: the granularity of CPU accounting
/// and the longest a busy agent runs before yielding to others.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 32,
            cpu: None,
            wall: None,
            calls_per_second: 10_000,
            max_writes: None,
            max_pushes: Some(1_000_000),
            max_learnings: Some(100_000),
            max_written_bytes: Some(1 << 30),
            workspace: WorkspaceLimits::default(),
            http: HttpLimits::default(),
        }
    }
}

impl Limits {
    /// The CPU budget in epoch ticks, if limited.
    pub(crate) fn cpu_ticks(&self) -> Option<u64> {
        self.cpu
            .map(|d| (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64)
    }
}

/// Enforces [`Limits`] on a store and remembers which limit an agent hit, so
/// its end can be explained.
pub(crate) struct Limiter {
    limits: Limits,
    memory_in_use: usize,
    /// The growth last allowed, taken back if wasmtime then refuses it.
    last_growth: usize,
    /// Set when a limit stopped the agent.
    pub(crate) hit: Option<String>,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            memory_in_use: 0,
            last_growth: 0,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_in_use - current.min(self.memory_in_use) + desired;
        if total as u64 > self.limits.memory_bytes {
            let msg = format!(
                "hit its memory limit of {} (tried to grow to {})",
                mib(self.limits.memory_bytes),
                mib(total as u64)
            );
            self.hit = Some(msg.clone());
            return Err(wasmtime::format_err!("{msg}"));
        }
        self.last_growth = desired.saturating_sub(current);
        self.memory_in_use = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The growth was refused after we counted it (e.g. past the memory's
        // own maximum): the guest sees memory.grow fail, and nothing grew.
        self.memory_in_use = self.memory_in_use.saturating_sub(self.last_growth);
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.table_elements {
            let msg = format!(
                "hit its table limit of {} elements",
                self.limits.table_elements
            );
            self.hit = Some(msg.clone());
            return Err(wasmtime::format_err!("{msg}"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.instances as usize
    }

    fn tables(&self) -> usize {
        self.limits.instances as usize
    }

    fn memories(&self) -> usize {
        self.limits.instances as usize
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
