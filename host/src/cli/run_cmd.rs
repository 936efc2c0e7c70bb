//! `wawe run`: run a swarm from a manifest, one module, or a watched folder,
//! with a live progress line and a summary at the end.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::DurabilityArg;
use super::ui_cmd::ServeArgs;
use crate::env::{Durability, Env, EnvLocation, EnvOptions, Stats, TaskState};
use crate::manifest::{AgentPlan, AgentSettings, Manifest};
use crate::runtime::caps::workspace::Access;
use crate::runtime::{Grants, Limits, Module, RestartPolicy, Runtime, RuntimeOptions, Workspace};
use crate::swarm::{Changed, Endings, FolderChange, Swarm, watch_folder};
use crate::ui::Ui;

/// Arguments of `wawe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A swarm manifest (`swarm.toml`), one agent module (`agent.wasm`), or a
    /// folder whose `.wasm` files are run and watched (dropped in: started;
    /// replaced: restarted on the new code; removed: stopped).
    pub target: PathBuf,

    /// The environment: a file, or a `postgres://USER@HOST/DB?schema=NAME`
    /// URL. Default: the manifest's `env` (else `wawe.db` beside it); for a
    /// module or folder, `wawe.db` in the current directory.
    #[arg(long, env = "WAWE_ENV", value_name = "FILE|URL")]
    pub env: Option<EnvLocation>,

    /// The workspace: a directory shared by the swarm (overrides the
    /// manifest's `workspace`). A single module given here is granted
    /// `workspace = "write"`; in a folder, each module's `NAME.toml` says.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Replicas of a single module.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: u32,

    /// A `key=value` pair for a single module's config (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    pub config: Vec<(String, String)>,

    /// Restart policy of a single module.
    #[arg(long, value_enum, default_value = "on-failure")]
    pub restart: RestartArg,

    /// Commit durability (`full` waits for the disk on every commit).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,

    /// Start from an empty environment: delete the environment file (or drop
    /// the PostgreSQL schema) first, only if it is a wawe environment that no
    /// live host is using; anything else is refused.
    #[arg(long)]
    pub reset: bool,

    /// A host silent this long counts as dead to the other hosts sharing the
    /// environment, which then end its agents and hand on their work.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub host_ttl: Duration,

    /// Do not cache compiled modules on disk.
    #[arg(long)]
    pub no_cache: bool,

    /// No progress line and no summary table, only errors (and the summary
    /// with --json).
    #[arg(long, short)]
    pub quiet: bool,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Serve the live web view beside the swarm, at ADDR (default
    /// 127.0.0.1:7878). It stays up after the swarm finishes, until Ctrl-C.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = crate::ui::DEFAULT_LISTEN,
        value_parser = ui_addr
    )]
    pub ui: Option<SocketAddr>,

    /// With --ui: the token every request must carry (made up and printed
    /// when the address is not loopback and none is given).
    #[arg(long, requires = "ui", value_name = "TOKEN")]
    pub ui_token: Option<String>,

    /// With --ui: allow operator actions (retry, cancel) from the page.
    #[arg(long, requires = "ui")]
    pub ui_actions: bool,
}

fn ui_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not an ADDR:PORT such as 127.0.0.1:7878 (put --ui after the manifest, \
             or write --ui=ADDR:PORT)"
        )
    })
}

/// Start the live view beside a swarm when `--ui` asks for it.
async fn start_ui(args: &RunArgs, env: &Env) -> anyhow::Result<Option<Ui>> {
    let Some(listen) = args.ui else {
        return Ok(None);
    };
    let serve = ServeArgs {
        listen,
        token: args.ui_token.clone(),
        actions: args.ui_actions,
    };
    let ui = serve
        .start(env.clone(), Some(env.options().durability))
        .await?;
    eprintln!("wawe: live view at {}", ui.url());
    Ok(Some(ui))
}

/// Restart policies, as flags.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RestartArg {
    /// One run only.
    Never,
    /// Restart after a crash or error.
    OnFailure,
    /// Restart after every end.
    Always,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 2s or 500ms)"))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// What `wawe run` ended with, for the summary.
#[derive(Debug, serde::Serialize)]
struct Summary<'a> {
    env: String,
    agents: &'a Endings,
    runs: crate::runtime::CountersSnapshot,
    tasks: &'a [(String, u64)],
    leases_held: u64,
}

/// Run `wawe run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let options = RuntimeOptions {
        cache_dir: if args.no_cache {
            None
        } else {
            crate::runtime::default_cache_dir()
        },
        host_ttl: args.host_ttl,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(options)?;
    if args.target.is_dir() {
        return run_folder(&runtime, &args).await;
    }
    let Plan {
        env: env_path,
        durability,
        workspace,
        agents: plans,
    } = plan(&args)?;
    // Load and check every module (and its grants) before touching the environment.
    let mut modules = Vec::new();
    for p in &plans {
        let module = load(&runtime, &p.module).await?;
        module.check_grants(&p.name, &p.grants)?;
        modules.push(module);
    }
    let workspace = workspace.as_deref().map(Workspace::open).transpose()?;
    if args.reset {
        reset_env(&env_path).await?;
    }
    let env = open_env(&env_path, durability)?;
    let ui = start_ui(&args, &env).await?;
    let host = runtime.start_with(env.clone(), workspace).await?;
    let mut swarm = Swarm::new(host);
    for (p, m) in plans.iter().zip(&modules) {
        swarm.start(p, m);
    }
    let progress = Progress::new(args.quiet || args.json);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let interrupted = loop {
        if swarm.all_finished() {
            break false;
        }
        tokio::select! {
            _ = &mut signal => break true,
            _ = tokio::time::sleep(Duration::from_millis(200)) => progress.draw(&swarm).await,
        }
    };
    finish(swarm, &env, &args, interrupted, progress, ui).await
}

/// Stop everything, close the environment and print the summary; an agent
/// that ended failed makes the exit status non-zero.
async fn finish(
    swarm: Swarm,
    env: &Env,
    args: &RunArgs,
    interrupted: bool,
    progress: Progress,
    ui: Option<Ui>,
) -> anyhow::Result<()> {
    progress.clear();
    let lost = swarm.host().lost();
    let (endings, runs) = swarm.shutdown().await?;
    let stats = env.stats().await?;
    let summary = Summary {
        env: env.location().to_string(),
        agents: &endings,
        runs,
        tasks: &stats.tasks,
        leases_held: stats.leases,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        print_summary(&summary, &stats, interrupted);
    }
    if let Some(ui) = ui {
        if !interrupted {
            eprintln!(
                "wawe: the live view stays up at {} (Ctrl-C to stop)",
                ui.url()
            );
            shutdown_signal().await;
        }
        ui.stop().await?;
    }
    env.close();
    if let Some(why) = lost {
        bail!(
            "this host {why}, so it stopped its agents (their work goes on elsewhere); start \
             it again to rejoin"
        );
    }
    if !endings.failed.is_empty() {
        bail!(
            "{} agent(s) ended failed:\n  {}",
            endings.failed.len(),
            endings.failed.join("\n  ")
        );
    }
    Ok(())
}

fn print_summary(s: &Summary<'_>, stats: &Stats, interrupted: bool) {
    let how = if interrupted { "stopped" } else { "finished" };
    println!("swarm {how} on {}", s.env);
    println!(
        "  agent runs: {} exited, {} failed, {} crashed, {} stopped; {} restarts{}",
        s.runs.exited,
        s.runs.failed,
        s.runs.crashed,
        s.runs.stopped,
        s.runs.restarts,
        gave_up(s.runs.gave_up, s.agents.revived),
    );
    let tasks: Vec<String> = stats
        .tasks
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let tasks = if tasks.is_empty() {
        "none".to_string()
    } else {
        tasks.join(", ")
    };
    println!("  tasks: {tasks}");
    println!("  leases still held: {}", s.leases_held);
    for f in &s.agents.failed {
        println!("  failed: {f}");
    }
    let total: u64 = stats.tasks.iter().map(|(_, n)| n).sum();
    let done = stats
        .tasks
        .iter()
        .find(|(state, _)| state == "done")
        .map_or(0, |(_, n)| *n);
    let crashes = s.runs.crashed + s.runs.failed;
    if !interrupted && s.agents.failed.is_empty() && done == total && s.leases_held == 0 {
        let healed = match crashes {
            0 => "no agent crashed".to_string(),
            1 => "1 crash healed (the crashed agent was restarted and finished)".to_string(),
            n => format!("{n} crashes healed (each crashed agent was restarted and finished)"),
        };
        let tasks = match total {
            0 => "no tasks".to_string(),
            n => format!("all {n} tasks done"),
        };
        println!("ok: {tasks}, {healed}, no lease left held");
    }
}

/// The summary's note on crash loops: how many replicas gave up, and how many
/// of those (or of other failed ones) a change in the folder started again,
/// so the line agrees with the exit status.
fn gave_up(gave_up: u64, revived: u32) -> String {
    match (gave_up, revived) {
        (0, 0) => String::new(),
        (n, 0) => format!(", {n} given up (crash loop)"),
        (0, r) => format!(", {r} ended failed, then started again on a change in the folder"),
        (n, r) => format!(
            ", {n} given up (crash loop); {r} of the failed started again on a change in the folder"
        ),
    }
}

/// What `wawe run` runs: from a manifest, or one module and the flags.
struct Plan {
    env: EnvLocation,
    durability: Durability,
    workspace: Option<PathBuf>,
    agents: Vec<AgentPlan>,
}

/// The plan of a manifest or module.
fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let target = &args.target;
    if !target.exists() {
        bail!(
            "{} does not exist: name a swarm manifest (.toml), an agent module (.wasm) or a folder of modules",
            target.display()
        );
    }
    let flag_durability = args.durability.map(Durability::from);
    if target.extension().and_then(|e| e.to_str()) == Some("wasm") {
        let name = module_name(target)?;
        let plan = AgentPlan {
            name,
            module: target.clone(),
            replicas: args.replicas.max(1),
            restart: match args.restart {
                RestartArg::Never => RestartPolicy::Never,
                RestartArg::OnFailure => RestartPolicy::OnFailure,
                RestartArg::Always => RestartPolicy::Always,
            },
            limits: Limits::default(),
            config: args.config.clone(),
            grants: Grants {
                workspace: args.workspace.as_ref().map(|_| Access::Write),
                http: Vec::new(),
            },
        };
        return Ok(Plan {
            env: args.env.clone().unwrap_or_else(|| "wawe.db".into()),
            durability: flag_durability.unwrap_or_default(),
            workspace: args.workspace.clone(),
            agents: vec![plan],
        });
    }
    let manifest = Manifest::from_file(target)?;
    Ok(Plan {
        env: args.env.clone().unwrap_or(manifest.env),
        durability: flag_durability.unwrap_or(manifest.durability),
        workspace: args.workspace.clone().or(manifest.workspace),
        agents: manifest.agents,
    })
}

fn module_name(path: &Path) -> anyhow::Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no usable file name", path.display()))
}

/// Delete the wawe environment at `at`, if there is one and no live host
/// uses it.
async fn reset_env(at: &EnvLocation) -> anyhow::Result<()> {
    // Refuses anything that is not a wawe environment.
    let env = match Env::open_existing(at, EnvOptions::default()) {
        Ok(env) => env,
        Err(crate::env::OpenError::Missing { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let now = env.now_ms();
    let live: Vec<String> = env
        .list_hosts()
        .await?
        .into_iter()
        .filter(|h| h.state == "alive" && h.last_heartbeat + h.ttl_ms > now)
        .map(|h| h.id)
        .collect();
    if !live.is_empty() {
        env.close();
        bail!(
            "not resetting {at}: host(s) {} are running on it; stop them first",
            live.join(", ")
        );
    }
    env.destroy()
        .await
        .with_context(|| format!("cannot reset {at}"))
}

fn open_env(path: &EnvLocation, durability: Durability) -> anyhow::Result<Env> {
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };
    Ok(Env::open(path, opts)?)
}

/// Run every module of a folder and follow the folder until interrupted.
async fn run_folder(runtime: &Runtime, args: &RunArgs) -> anyhow::Result<()> {
    let dir = &args.target;
    let env_path = args.env.clone().unwrap_or_else(|| "wawe.db".into());
    let durability = args.durability.map(Durability::from).unwrap_or_default();
    let mut changes =
        watch_folder(dir).with_context(|| format!("cannot watch {}", dir.display()))?;
    if args.reset {
        reset_env(&env_path).await?;
    }
    let workspace = args.workspace.as_deref().map(Workspace::open).transpose()?;
    let env = open_env(&env_path, durability)?;
    let ui = start_ui(args, &env).await?;
    let host = runtime.start_with(env.clone(), workspace).await?;
    let mut swarm = Swarm::new(host);
    let progress = Progress::new(args.quiet || args.json);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            change = changes.recv() => {
                let Some(change) = change else { break };
                progress.clear();
                apply(runtime, &mut swarm, change).await;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => progress.draw(&swarm).await,
        }
    }
    finish(swarm, &env, args, true, progress, ui).await
}

/// Bring the swarm in line with one folder change. A module that fails to
/// load is reported and skipped; the rest of the swarm keeps running.
async fn apply(runtime: &Runtime, swarm: &mut Swarm, change: FolderChange) {
    match change {
        FolderChange::Removed { name } => {
            if swarm.contains(&name) {
                swarm.stop(&name).await;
                eprintln!("wawe: {name}: module removed, agents stopped");
            }
        }
        FolderChange::Upsert {
            name,
            module,
            settings,
            what,
        } => {
            let loaded = load_with_settings(runtime, &name, &module, settings.as_deref()).await;
            let (plan, module) = match loaded {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("wawe: skipped {name}: {e:#}");
                    return;
                }
            };
            if plan.grants.workspace.is_some() && swarm.host().workspace().is_none() {
                eprintln!(
                    "wawe: skipped {name}: its settings grant the workspace, but this run has \
                     none: start it with --workspace DIR"
                );
                return;
            }
            if swarm.runs(&plan, &module) {
                return;
            }
            let running = swarm.contains(&name);
            let verb = match (running, what, &settings) {
                (true, Changed::Settings, Some(_)) => {
                    format!("restarted with its changed settings ({name}.toml)")
                }
                (true, Changed::Settings, None) => {
                    format!("restarted without settings ({name}.toml removed)")
                }
                (true, _, _) => "restarted on its new code".to_owned(),
                (false, _, None) => format!("started without settings (no {name}.toml)"),
                (false, _, Some(_)) => "started".to_owned(),
            };
            if running {
                swarm.replace(&name).await;
            }
            swarm.start(&plan, &module);
            eprintln!("wawe: {name}: {verb} ({} replica(s))", plan.replicas);
        }
    }
}

async fn load_with_settings(
    runtime: &Runtime,
    name: &str,
    module: &Path,
    settings: Option<&Path>,
) -> anyhow::Result<(AgentPlan, Module)> {
    let settings = match settings {
        Some(path) => AgentSettings::from_file(path)?,
        None => AgentSettings::default(),
    };
    let plan = settings
        .plan(name, module.to_path_buf())
        .map_err(anyhow::Error::msg)?;
    let module = load(runtime, module).await?;
    module.check_grants(name, &plan.grants)?;
    Ok((plan, module))
}

/// Load (compile) a module off the async threads, so running agents are not
/// held up while it compiles.
async fn load(runtime: &Runtime, path: &Path) -> anyhow::Result<Module> {
    let (runtime, path) = (runtime.clone(), path.to_path_buf());
    Ok(tokio::task::spawn_blocking(move || runtime.load(&path)).await??)
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The live progress line on a terminal's stderr.
struct Progress {
    on: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            on: !quiet && std::io::stderr().is_terminal(),
        }
    }

    async fn draw(&self, swarm: &Swarm) {
        if !self.on {
            return;
        }
        let c = swarm.host().counters();
        let Ok(work) = swarm.host().env().work_counts().await else {
            return;
        };
        let n = |state| work.tasks_in(state);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r\x1b[2Kagents {} running, {} crashed, {} restarted | tasks {} ready, {} claimed, {} done, {} dead | leases {}",
            c.running,
            c.crashed,
            c.restarts,
            n(TaskState::Ready),
            n(TaskState::Claimed),
            n(TaskState::Done),
            n(TaskState::Dead),
            work.leases
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
