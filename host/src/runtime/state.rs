//! What a store holds for one agent instance: its identity, the environment,
//! a WASI context holding only what its grants allow, and its limits.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::caps::Grants;
use super::caps::http::HttpState;
use super::caps::workspace::{GUEST_ROOT, Workspace, WorkspaceState};
use super::limits::{Limiter, Limits};
use super::output::{Output, Stream};
use super::quota::{self, Call, Quota};
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
    /// Its use of its quotas in this run (shared with the HTTP hooks, whose
    /// requests count against its call rate).
    pub(crate) quota: Arc<Mutex<Quota>>,
    /// The workspace capability, if granted.
    pub(crate) workspace: Option<WorkspaceState>,
    /// The HTTP capability (its allow-list empty when not granted).
    pub(crate) http: HttpState,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
}

impl AgentState {
    /// A fresh state: WASI with nothing in it (no environment variables, no
    /// arguments, no network, stdin closed; stdout/stderr captured into the
    /// host log), except the workspace preopened read-only at
    /// [`GUEST_ROOT`] when granted.
    pub(crate) fn new(
        id: AgentId,
        env: Env,
        limits: &Limits,
        grants: &Grants,
        workspace: Option<&Arc<Workspace>>,
    ) -> anyhow::Result<Self> {
        let stdout = Output::new(id.clone(), Stream::Stdout);
        let stderr = Output::new(id.clone(), Stream::Stderr);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout)
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        let workspace = match (grants.workspace, workspace) {
            (Some(access), Some(ws)) => {
                let state = WorkspaceState::new(ws.clone(), access, limits.workspace);
                wasi.preopened_dir(state.root(), GUEST_ROOT, FsPerms::ReadOnly)?;
                Some(state)
            }
            (Some(_), None) => anyhow::bail!(
                "agent {id} is granted the workspace, but this host has none: name it with \
                 `workspace = \"DIR\"` in the manifest or `--workspace DIR`"
            ),
            (None, _) => None,
        };
        // Handles (streams, pollables) an agent may hold at once: enough for
        // any real agent, and a bound on the host memory a hoarder can take.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let quota = Arc::new(Mutex::new(Quota::new(limits)));
        let http = HttpState::new(
            id.clone(),
            env.clone(),
            grants.http.clone(),
            limits.http,
            quota.clone(),
        );
        Ok(Self {
            id,
            env,
            limiter: Limiter::new(limits.clone()),
            quota,
            cpu_left: limits.cpu_ticks(),
            last_tick: None,
            stderr,
            workspace,
            http,
            wasi: wasi.build(),
            table,
        })
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
        quota::pay(&self.quota, call, &self.id)
            .await
            .map_err(|reason| {
                self.limiter.hit = Some(reason.clone());
                wasmtime::format_err!("{reason}")
            })
    }

    /// Charge `bytes` written to the workspace to the per-run quota: past
    /// it, the run is stopped (a trap naming the quota).
    pub(crate) fn charge_written(&mut self, bytes: u64) -> wasmtime::Result<()> {
        let charged = self
            .quota
            .lock()
            .expect("quota poisoned")
            .charge_written(bytes);
        charged.map_err(|reason| {
            self.limiter.hit = Some(reason.clone());
            wasmtime::format_err!("{reason}")
        })
    }
}
