//! The runtime: hosts agent components and maps their imports onto
//! environment operations.
//!
//! One [`wasmtime::Engine`] per host; each module is compiled once (and
//! cached on disk) and pre-linked, then instantiated afresh for every run of
//! every agent replica. Agents run as tokio tasks, yielding every epoch tick,
//! so thousands share a few threads and a busy loop starves no one. The host
//! records itself in the `hosts` table, renews the leases of its live agents
//! (keepalive), sweeps expired leases and lapsed claims, and on shutdown
//! stops its agents and releases what they held.

mod bindings;
pub mod caps;
mod imports;
mod limits;
mod load;
mod output;
mod quota;
#[cfg(target_os = "linux")]
mod slab;
mod state;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

pub use caps::Grants;
pub use caps::workspace::Workspace;
pub use limits::{EPOCH_TICK, Limits};
pub use load::{LoadError, Module, default_cache_dir};
pub use supervisor::RunEnd;

use crate::env::{Env, EnvError};
use state::AgentState;

/// When an ended agent is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: one run only.
    Never,
    /// After a crash or an error return, not after a clean exit.
    #[default]
    OnFailure,
    /// After every end, clean or not (until stopped).
    Always,
}

/// One agent replica to run.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The agent's name in the swarm.
    pub name: String,
    /// Which replica (0-based); the identity is `name.replica@host`.
    pub replica: u32,
    /// What it may use.
    pub limits: Limits,
    /// When to restart it.
    pub restart: RestartPolicy,
    /// The key/value map handed to its `run`.
    pub config: Vec<(String, String)>,
    /// What it may use beyond the environment.
    pub grants: Grants,
}

/// Settings of a host runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled modules are cached between runs (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// A host silent longer than this counts as dead to other hosts.
    pub host_ttl: Duration,
    /// How often expired leases and lapsed claims are swept.
    pub sweep_every: Duration,
    /// The pause before the first restart; doubles per failure in a row.
    pub restart_backoff: Duration,
    /// The longest pause before a restart.
    pub restart_backoff_max: Duration,
    /// Restarts after failures allowed within [`Self::crash_loop_window`]
    /// before the agent counts as crash-looping and is given up on.
    pub crash_loop_restarts: u32,
    /// The window crash-loop restarts are counted in.
    pub crash_loop_window: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            host_ttl: Duration::from_secs(10),
            sweep_every: Duration::from_secs(1),
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(5),
            crash_loop_restarts: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

/// Counts of what the host's agents did, for progress displays.
#[derive(Debug, Default)]
pub struct Counters {
    /// Agent runs in progress.
    pub running: AtomicU64,
    /// Runs that returned ok.
    pub exited: AtomicU64,
    /// Runs that returned an error.
    pub failed: AtomicU64,
    /// Runs that trapped, panicked or hit a limit.
    pub crashed: AtomicU64,
    /// Runs stopped by the host.
    pub stopped: AtomicU64,
    /// Restarts.
    pub restarts: AtomicU64,
    /// Agents given up on after a crash loop.
    pub gave_up: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    /// Agent runs in progress.
    pub running: u64,
    /// Runs that returned ok.
    pub exited: u64,
    /// Runs that returned an error.
    pub failed: u64,
    /// Runs that trapped, panicked or hit a limit.
    pub crashed: u64,
    /// Runs stopped by the host.
    pub stopped: u64,
    /// Restarts.
    pub restarts: u64,
    /// Agents given up on after a crash loop.
    pub gave_up: u64,
}

impl Counters {
    /// The counts now.
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            running: get(&self.running),
            exited: get(&self.exited),
            failed: get(&self.failed),
            crashed: get(&self.crashed),
            stopped: get(&self.stopped),
            restarts: get(&self.restarts),
            gave_up: get(&self.gave_up),
        }
    }
}

/// What every agent task of a host shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) env: Env,
    pub(crate) host: String,
    /// The swarm's workspace on this host, if it has one.
    pub(crate) workspace: Option<Arc<Workspace>>,
    pub(crate) options: RuntimeOptions,
    pub(crate) counters: Counters,
    /// Set once (by [`Host::shutdown`], or when the host finds itself reaped
    /// or cut off from the environment): every supervisor stops its agent.
    pub(crate) stop_all: watch::Sender<bool>,
    /// The supervisors still running, so shutdown can wait for them.
    pub(crate) supervisors: Active,
    /// How long recent instantiations took.
    pub(crate) instantiations: InstantiationLog,
    /// When the last keepalive that succeeded was sent.
    pub(crate) heartbeat_sent: std::sync::Mutex<tokio::time::Instant>,
    /// Why the host lost its place in the environment (cut off, or reaped),
    /// once it did.
    pub(crate) lost: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// The host lost its place in the environment: stop every agent for good.
    fn lose(&self, why: String) {
        tracing::error!("host {} {why}; stopping its agents", self.host);
        self.lost.lock().expect("lost poisoned").get_or_insert(why);
        self.stop_all.send_replace(true);
    }
}

/// How many instantiations there were, and the times of the most recent
/// ones (at most [`InstantiationLog::KEEP`]: a long-lived host must not grow).
#[derive(Default)]
pub(crate) struct InstantiationLog {
    count: AtomicU64,
    recent: std::sync::Mutex<std::collections::VecDeque<Duration>>,
}

impl InstantiationLog {
    /// The most recent times kept.
    const KEEP: usize = 1 << 16;

    /// Count an instantiation that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut log = self.recent.lock().expect("instantiation log poisoned");
        if log.len() == Self::KEEP {
            log.pop_front();
        }
        log.push_back(took);
    }

    fn take(&self) -> Vec<Duration> {
        self.recent
            .lock()
            .expect("instantiation log poisoned")
            .drain(..)
            .collect()
    }
}

/// A count of running tasks that can be waited on until it is zero.
#[derive(Default)]
pub(crate) struct Active {
    count: std::sync::Mutex<usize>,
    zero: tokio::sync::Notify,
}

/// Held while a supervisor runs; dropping it counts the supervisor out.
pub(crate) struct ActiveGuard<'a>(&'a Active);

impl Active {
    pub(crate) fn enter(&self) -> ActiveGuard<'_> {
        *self.count.lock().expect("poisoned") += 1;
        ActiveGuard(self)
    }

    async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            if *self.count.lock().expect("poisoned") == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().expect("poisoned");
        *n -= 1;
        if *n == 0 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, for
/// as long as a runtime or host holds it.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Arc<Ticker>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wawe-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Arc::new(Ticker { stop }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How deep wasm may go from wherever it is entered.
const MAX_WASM_STACK: usize = 512 << 10;

/// Each agent's fiber stack. Stacks have no guard page (see `slab`), so this
/// must hold everything: wasm entered twice (its `run`, and its `cabi_realloc`
/// while an import returns a string or list; a realloc cannot call imports),
/// 1 MiB in all, and the host's frames around them with 3 MiB to spare. Only
/// touched pages cost memory.
const FIBER_STACK: usize = 4 << 20;

// Stacks have no guard page: they must hold two entries into wasm and the
// host's frames (see `FIBER_STACK`).
const _: () = assert!(FIBER_STACK >= 2 * MAX_WASM_STACK + (2 << 20));

/// The engine's settings: async, epoch interruption for fair scheduling and
/// CPU limits, and memories and stacks in shared mappings.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(FIBER_STACK);
    // Copy each agent's initial memory rather than map its image
    // copy-on-write: the same resident memory per live agent, and no
    // mappings of its own (the kernel allows a process 65,530).
    config.memory_init_cow(false);
    // Memories and stacks are slots of a few shared mappings, so the
    // number of live agents is bounded by memory, not by mappings.
    #[cfg(target_os = "linux")]
    {
        let slabs = slab::Slabs::new(FIBER_STACK);
        config.with_host_memory(slabs.clone());
        config.with_host_stack(slabs);
        // No reservation: every access is checked against the memory's
        // length, never against the (larger, guard-less) slot.
        config.memory_reservation(0);
        config.memory_guard_size(0);
        config.guard_before_linear_memory(false);
    }
    config
}

/// The engine and linker: compiles and checks modules. Cheap to clone.
/// Loading needs no environment, so bad modules are refused before anything
/// is written; [`Runtime::start`] then makes a [`Host`] on an environment.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<AgentState>>,
    options: RuntimeOptions,
    ticker: Arc<Ticker>,
}

impl Runtime {
    /// One engine (async, epoch interruption for fair scheduling and CPU
    /// limits, wasm backtraces) and a linker with WASI and `wawe:env`.
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Runtime> {
        let config = engine_config();
        let engine = Engine::new(&config)?;
        let mut linker = Linker::<AgentState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        imports::add_to_linker(&mut linker)?;
        caps::add_to_linker(&mut linker)?;
        let ticker = Ticker::start(engine.clone())?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            options,
            ticker,
        })
    }

    /// Load a module from `path`: compiled once (or taken from the cache),
    /// checked to be an agent component that imports only WASI and `wawe:env`.
    pub fn load(&self, path: &Path) -> Result<Module, LoadError> {
        load::load(
            &self.engine,
            &self.linker,
            self.options.cache_dir.as_deref(),
            path,
        )
    }

    /// Start a host on `env`: its record in the `hosts` table and its
    /// background work (epoch ticks, keepalive, sweeps). Must run inside a
    /// tokio runtime.
    pub async fn start(&self, env: Env) -> anyhow::Result<Host> {
        self.start_with(env, None).await
    }

    /// Like [`Runtime::start`], with the swarm's `workspace` (checked to be
    /// the one the environment's other hosts use, or recorded as it).
    pub async fn start_with(&self, env: Env, workspace: Option<Workspace>) -> anyhow::Result<Host> {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let ttl_ms = self.options.host_ttl.as_millis() as u64;
        let host = env
            .register_host(&hostname, std::process::id(), ttl_ms)
            .await?;
        if let Some(ws) = &workspace
            && let Err(e) = ws.register(&env, &host).await
        {
            let _ = env.host_stopped(&host).await;
            return Err(e);
        }
        let shared = Arc::new(Shared {
            engine: self.engine.clone(),
            env,
            host,
            workspace: workspace.map(Arc::new),
            options: self.options.clone(),
            counters: Counters::default(),
            stop_all: watch::channel(false).0,
            supervisors: Active::default(),
            instantiations: InstantiationLog::default(),
            heartbeat_sent: std::sync::Mutex::new(tokio::time::Instant::now()),
            lost: std::sync::Mutex::new(None),
        });
        let liveness = match Liveness::start(shared.clone()) {
            Ok(l) => l,
            Err(e) => {
                let _ = shared.env.host_stopped(&shared.host).await;
                return Err(e);
            }
        };
        let background = vec![tokio::spawn(sweeper(shared.clone()))];
        Ok(Host {
            shared,
            _ticker: self.ticker.clone(),
            liveness,
            background,
        })
    }
}

/// A host process's presence on one environment: it runs agents there.
pub struct Host {
    shared: Arc<Shared>,
    _ticker: Arc<Ticker>,
    liveness: Liveness,
    background: Vec<JoinHandle<()>>,
}

/// The keepalive and the watchdog, on a thread of their own: a host busy
/// starting or stopping tens of thousands of agents has that many tasks
/// queued on its async workers, and a heartbeat queued behind them was seen to
/// wait 7.5 s. Dropping it stops the thread.
struct Liveness {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Liveness {
    fn start(shared: Arc<Shared>) -> anyhow::Result<Liveness> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("wawe-liveness".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        () = keepalive(shared.clone()) => {}
                        () = watchdog(shared) => {}
                        _ = stopped => {}
                    }
                });
                drop(finished);
            })?;
        Ok(Liveness { stop, done })
    }

    /// Stop renewing and wait until no keepalive is in flight, so none
    /// lands after the host is recorded stopped.
    async fn stop(self) {
        drop(self.stop);
        let _ = self.done.await;
    }
}

/// A supervised agent replica; stop it with [`AgentHandle::stop`].
/// Dropping the handle stops the agent too.
pub struct AgentHandle {
    /// Its name in the swarm.
    pub name: String,
    /// Which replica.
    pub replica: u32,
    stop: watch::Sender<bool>,
    task: JoinHandle<RunEnd>,
}

impl AgentHandle {
    /// Ask the agent to stop; its current run is dropped at once (its leases
    /// released, its claimed tasks put back) and it is not restarted.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether it ended for good (not running and not going to restart).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Wait for it to end for good; returns how its last run ended.
    pub async fn join(self) -> RunEnd {
        self.task
            .await
            .unwrap_or_else(|e| RunEnd::Crashed(format!("its supervisor failed: {e}")))
    }
}

impl Host {
    /// This host's id in the `hosts` table.
    pub fn id(&self) -> &str {
        &self.shared.host
    }

    /// The environment it runs on.
    pub fn env(&self) -> &Env {
        &self.shared.env
    }

    /// The swarm's workspace on this host, if it has one.
    pub fn workspace(&self) -> Option<&Workspace> {
        self.shared.workspace.as_deref()
    }

    /// Why this host lost its place in the environment and stopped its
    /// agents (cut off from it, or reaped by another host), if it did.
    pub fn lost(&self) -> Option<String> {
        self.shared.lost.lock().expect("lost poisoned").clone()
    }

    /// What its agents did so far.
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.counters.snapshot()
    }

    /// How many agent instances this host has created (one per run).
    pub fn instantiations(&self) -> u64 {
        self.shared.instantiations.count.load(Ordering::Relaxed)
    }

    /// How long each instantiation since the last call took (the most
    /// recent 65,536), oldest first: for benchmarks and diagnostics.
    pub fn take_instantiation_times(&self) -> Vec<Duration> {
        self.shared.instantiations.take()
    }

    /// Start one supervised agent replica of `module`.
    pub fn spawn(&self, module: &Module, spec: AgentSpec) -> AgentHandle {
        let (stop, stop_rx) = watch::channel(false);
        let (name, replica) = (spec.name.clone(), spec.replica);
        let task = tokio::spawn(supervisor::supervise(
            self.shared.clone(),
            module.clone(),
            spec,
            stop_rx,
        ));
        AgentHandle {
            name,
            replica,
            stop,
            task,
        }
    }

    /// Stop the host: stop every agent it runs and wait for each to end
    /// (its end recorded, its leases released, its claimed tasks put back),
    /// stop the background work, and record the host stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shared.stop_all.send_replace(true);
        let waited =
            tokio::time::timeout(Duration::from_secs(30), self.shared.supervisors.wait_zero());
        if waited.await.is_err() {
            tracing::error!("agents did not stop within 30 s; recording them stopped anyway");
        }
        for task in &self.background {
            task.abort();
        }
        self.liveness.stop().await;
        self.shared.env.host_stopped(&self.shared.host).await?;
        Ok(())
    }
}

/// The longest pause between keepalives; a new lease waits at most this
/// long for its first renewal, so leases much shorter than this can lapse.
pub const KEEPALIVE_EVERY: Duration = Duration::from_millis(250);

/// Renew the host's heartbeat and its live agents' leases: every
/// [`KEEPALIVE_EVERY`], or a third of the shortest lease's ttl if sooner.
async fn keepalive(shared: Arc<Shared>) {
    let most = KEEPALIVE_EVERY.min(shared.options.host_ttl / 3);
    loop {
        let sent = tokio::time::Instant::now();
        let renewed = shared.env.keepalive(&shared.host).await;
        if renewed.is_ok() {
            *shared.heartbeat_sent.lock().expect("heartbeat poisoned") = sent;
        }
        let next = match renewed {
            Ok(Some(shortest)) => {
                Duration::from_millis(shortest / 3).clamp(Duration::from_millis(20), most)
            }
            Ok(None) => most,
            Err(EnvError::NotFound(_)) => {
                // Another host found this one silent past its ttl and reaped
                // it: its agents were recorded lost and their leases and
                // tasks handed on. Carrying on would act on what others now
                // hold, so every agent here stops.
                shared.lose("was reaped as silent by another host".into());
                return;
            }
            Err(e) => {
                tracing::warn!("keepalive failed: {e}");
                most
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// How long before others may reap it a host that cannot renew its
/// heartbeat stops its agents: a quarter of its ttl, at least half a second.
pub fn self_stop_margin(host_ttl: Duration) -> Duration {
    (host_ttl / 4)
        .max(Duration::from_millis(500))
        .min(host_ttl / 2)
}

/// Stop every agent of a host cut off from its environment before others may
/// reap it. Others reap a host once the database's clock passes its last
/// heartbeat plus its ttl; that heartbeat was written after the keepalive
/// carrying it was sent, so no one reaps before `sent + ttl` in real time.
/// This host stops its agents at `sent + ttl - margin`
/// ([`self_stop_margin`]), with `sent` the send time of its last keepalive
/// that succeeded: its agents never act on work others may already have taken
/// over, and anything they sent meanwhile is refused by fencing.
async fn watchdog(shared: Arc<Shared>) {
    let ttl = shared.options.host_ttl;
    let limit = ttl.saturating_sub(self_stop_margin(ttl));
    loop {
        let sent = *shared.heartbeat_sent.lock().expect("heartbeat poisoned");
        let silent = sent.elapsed();
        if silent >= limit {
            shared.lose(format!(
                "could not renew its heartbeat for {silent:?} (ttl {ttl:?}), before other hosts \
                 may reap it"
            ));
            return;
        }
        tokio::time::sleep(limit - silent).await;
    }
}

/// Cut `s` to at most `max` bytes (on a character boundary), marking the cut.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// Expire leases and lapsed claims now and then.
async fn sweeper(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(shared.options.sweep_every).await;
        if let Err(e) = shared.env.sweep().await {
            tracing::warn!("sweep failed: {e}");
        }
    }
}
