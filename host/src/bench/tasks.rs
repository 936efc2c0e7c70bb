//! The `tasks` workload: push + claim + complete, each call answered after
//! its commit, by many concurrent callers, three ways in one run:
//!
//! - **wasm**: N bench agents, each a component calling `wawe:env` imports;
//! - **native**: N tokio tasks calling the same [`Env`] methods in-process;
//! - **naive**: the native loop on an environment whose writer commits every
//!   operation in its own transaction (`max_batch = 1`): the same schema and
//!   statements, without group commit.

use std::time::Duration;

use anyhow::Context;

use super::{Place, discard, guest};
use crate::env::{AgentId, Durability, Env, EnvLocation, EnvOptions, PushOptions, TaskState};
use crate::ui::{Ui, UiOptions};

/// What `wawe bench tasks` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TasksReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `normal` or `full`.
    pub durability: &'static str,
    /// Concurrent callers in each mode.
    pub agents: u32,
    /// Tasks pushed, claimed and completed in each mode.
    pub tasks: u64,
    /// Through wasm agents.
    pub wasm: Option<Throughput>,
    /// Native calls in this process.
    pub native: Option<Throughput>,
    /// Native calls, one transaction per operation.
    pub naive: Option<Throughput>,
    /// wasm tasks/s over native tasks/s.
    pub wasm_vs_native: Option<f64>,
    /// wasm tasks/s over naive tasks/s.
    pub wasm_vs_naive: Option<f64>,
    /// The wasm mode again with pages of the live view open (`--pages`).
    pub with_pages: Option<PagesRun>,
}

/// The wasm mode run again while `pages` pages of `wawe ui` watch it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PagesRun {
    /// Pages open (each following the stream and re-fetching a task list).
    pub pages: u32,
    /// The wasm mode with them open.
    pub wasm: Throughput,
    /// How much slower than the wasm mode without pages (0.03 = 3%).
    pub slowdown: f64,
    /// Frames the pages received in all.
    pub frames: u64,
    /// Requests the pages made besides their streams.
    pub fetches: u64,
    /// Resident memory the open pages added to the process, per page (KiB).
    pub kib_per_page: f64,
}

/// The ways the workload is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Bench agents in wasm.
    Wasm,
    /// Native calls, group commit on.
    Native,
    /// Native calls, one transaction per operation.
    Naive,
}

/// How fast a run went: units are tasks (`tasks`) or reserve + release
/// rounds (`reservations`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Throughput {
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Units per second.
    pub rate_per_s: f64,
    /// Writer transactions per unit: below 1 when group commit batched them.
    pub commits_per_unit: f64,
}

const QUEUE: &str = "bench";
const LEASE_MS: u64 = 60_000;
const WAIT_MS: u64 = 60_000;

/// Run the workload with `agents` callers and about `tasks` tasks in each
/// mode (rounded down to a multiple of `agents`), each mode on a fresh
/// environment of `place`.
pub async fn tasks(
    place: &Place,
    agents: u32,
    tasks: u64,
    durability: Durability,
    modes: &[Mode],
    pages: u32,
) -> anyhow::Result<TasksReport> {
    let agents = agents.max(1);
    let per_agent = (tasks / u64::from(agents)).max(1);
    let total = per_agent * u64::from(agents);
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };

    let run_wasm = async |path: &EnvLocation| -> anyhow::Result<(Env, Throughput)> {
        let (env, rate) = guest::run_fresh(path, opts.clone(), place.dir(), agents, total, |_| {
            guest::config([
                ("workload", "tasks".into()),
                ("queue", QUEUE.into()),
                ("count", per_agent.to_string()),
            ])
        })
        .await?;
        check_all_done(&env, total).await?;
        Ok((env, rate))
    };
    let wasm = if modes.contains(&Mode::Wasm) {
        let (env, rate) = run_wasm(&place.fresh("wasm").await?).await?;
        discard(env).await?;
        Some(rate)
    } else {
        None
    };
    let with_pages = match wasm {
        Some(alone) if pages > 0 => {
            // The view on a handle of its own, as `wawe ui` beside a swarm
            // has: it learns of commits as another process would.
            let path = place.fresh("wasm-pages").await?;
            let watched = Env::open(&path, opts.clone())?;
            let ui = Ui::start(
                watched.clone(),
                UiOptions {
                    listen: "127.0.0.1:0".parse()?,
                    ..UiOptions::default()
                },
            )
            .await?;
            let rss = super::pages::rss_kib();
            let open = super::pages::open(ui.addr(), pages).await?;
            let kib_per_page =
                super::pages::rss_kib().saturating_sub(rss) as f64 / f64::from(pages);
            let (env, rate) = run_wasm(&path).await?;
            let (frames, fetches) = (
                open.frames.load(std::sync::atomic::Ordering::Relaxed),
                open.fetches.load(std::sync::atomic::Ordering::Relaxed),
            );
            drop(open);
            ui.stop().await?;
            watched.close();
            discard(env).await?;
            Some(PagesRun {
                pages,
                wasm: rate,
                slowdown: 1.0 - rate.rate_per_s / alone.rate_per_s,
                frames,
                fetches,
                kib_per_page,
            })
        }
        _ => None,
    };
    let native = if modes.contains(&Mode::Native) {
        Some(
            run_native(
                &place.fresh("native").await?,
                opts.clone(),
                agents,
                per_agent,
            )
            .await?,
        )
    } else {
        None
    };
    let naive = if modes.contains(&Mode::Naive) {
        let opts = EnvOptions {
            max_batch: 1,
            ..opts
        };
        Some(run_native(&place.fresh("naive").await?, opts, agents, per_agent).await?)
    } else {
        None
    };
    let ratio = |a: Option<Throughput>, b: Option<Throughput>| Some(a?.rate_per_s / b?.rate_per_s);
    Ok(TasksReport {
        backend: place.backend(),
        durability: durability.name(),
        agents,
        tasks: total,
        wasm_vs_native: ratio(wasm, native),
        wasm_vs_naive: ratio(wasm, naive),
        with_pages,
        wasm,
        native,
        naive,
    })
}

impl Throughput {
    /// `units` done in `took` with `commits` transactions.
    pub(super) fn of(units: u64, took: Duration, commits: u64) -> Throughput {
        let seconds = took.as_secs_f64();
        Throughput {
            seconds,
            rate_per_s: units as f64 / seconds,
            commits_per_unit: commits as f64 / units as f64,
        }
    }
}

/// The native loop: `agents` tokio tasks, each `per_agent` rounds.
async fn run_native(
    path: &EnvLocation,
    opts: EnvOptions,
    agents: u32,
    per_agent: u64,
) -> anyhow::Result<Throughput> {
    let total = per_agent * u64::from(agents);
    let (env, rate) = super::run_native(path, opts, agents, total, |env, n| async move {
        let me = AgentId::new(format!("native.{n}"));
        for _ in 0..per_agent {
            env.push(&me, QUEUE, "", PushOptions::default()).await?;
            let task = env
                .claim(&me, QUEUE, LEASE_MS, WAIT_MS)
                .await?
                .context("no task arrived within a minute")?;
            env.complete(&me, task.id, task.token, "").await?;
        }
        Ok(())
    })
    .await?;
    check_all_done(&env, total).await?;
    discard(env).await?;
    Ok(rate)
}

/// The run counts only if every task it pushed ended done.
async fn check_all_done(env: &Env, total: u64) -> anyhow::Result<()> {
    let done = env.work_counts().await?.tasks_in(TaskState::Done);
    anyhow::ensure!(
        done == total,
        "only {done} of {total} tasks ended done: the run does not count"
    );
    Ok(())
}
