//! What a store holds for one agent instance: its identity, the environment,
//! an empty WASI context, and its limits.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{Limiter, Limits};
use super::output::{Output, Stream};
use super::quota::{Call, Quota};
use crate::env::{AgentId, Env};

/// The most WASI handles one agent instance may hold at once.
const MAX_HANDLES: usize = 4096;

/// The store data of one agent instance.
pub(crate) struct AgentState {
    /// Who the agent is; every import acts under this identity.
    pub(crate) id: AgentId,
    pub(crate) env: Env,
    pub(crate) limiter: Limiter,
    /// Epoch ticks left before the CPU limit ends the run.
    pub(crate) cpu_left: Option<u64>,
    /// When the epoch callback last ran, to tell busy ticks from idle ones.
    pub(crate) last_tick: Option<std::time::Instant>,
    pub(crate) stderr: Output,
    /// Its use of its environment quotas in this run.
    pub(crate) quota: Quota,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl AgentState {
    /// A fresh state: WASI with nothing in it (no preopened directories, no
    /// environment variables, no arguments, no network, stdin closed), and
    /// stdout/stderr captured into the host log.
    pub(crate) fn new(id: AgentId, env: Env, limits: &Limits) -> Self {
        let stdout = Output::new(id.clone(), Stream::Stdout);
        let stderr = Output::new(id.clone(), Stream::Stderr);
        let wasi = WasiCtx::builder()
            .stdout(stdout)
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        // Handles (streams, pollables) an agent may hold at once: enough for
        // any real agent, and a bound on the host memory a hoarder can take.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        Self {
            id,
            env,
            limiter: Limiter::new(limits.clone()),
            quota: Quota::new(limits),
            cpu_left: limits.cpu_ticks(),
            last_tick: None,
            stderr,
            wasi,
            table,
        }
    }
}

impl WasiView for AgentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl AgentState {
    /// Charge one environment call to the agent's quotas: wait out its rate
    /// if it calls too fast, or stop the run (a trap naming the quota, kept
    /// as the reason it ended) when it goes past a per-run cap.
    pub(crate) async fn charge(&mut self, call: Call) -> wasmtime::Result<()> {
        match self.quota.charge(call) {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                if !self.quota.throttled {
                    self.quota.throttled = true;
                    tracing::warn!(
                        agent = %self.id,
                        "calls the environment faster than its quota allows; throttled"
                    );
                }
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(reason) => {
                self.limiter.hit = Some(reason.clone());
                Err(wasmtime::format_err!("{reason}"))
            }
        }
    }
}
