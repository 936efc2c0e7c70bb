//! `wawe bench`: measure wawe on this machine.

use clap::{Args, Subcommand};

use super::DurabilityArg;
use crate::bench;
use crate::bench::Place;
use crate::env::{Durability, EnvLocation};

/// Arguments of `wawe bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Push + claim + complete, each answered after its commit, by N
    /// concurrent callers: wasm agents, native calls, and native calls
    /// without group commit (one transaction per operation).
    Tasks {
        /// Concurrent callers in each mode.
        #[arg(long, default_value_t = 64)]
        agents: u32,
        /// Tasks in each mode.
        #[arg(long, default_value_t = 20_000)]
        tasks: u64,
        /// Run only these modes (for profiling one of them), comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["wasm", "native", "naive"])]
        only: Vec<bench::Mode>,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Run on PostgreSQL: fresh schemas on this server (postgres://…),
        /// dropped afterwards. Default: SQLite files in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Run the wasm mode again with this many pages of the live view
        /// (`wawe ui`) open, each following the stream and re-fetching a task
        /// list as a browser does, and report the slowdown.
        #[arg(long, default_value_t = 0, value_name = "N")]
        pages: u32,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Reserve + release churn by N concurrent callers, on resources of
    /// their own and on a few shared ones (conflicts that queue), through
    /// wasm agents and native calls.
    Reservations {
        /// Concurrent callers.
        #[arg(long, default_value_t = 64)]
        agents: u32,
        /// Reserve + release rounds in each run.
        #[arg(long, default_value_t = 10_000)]
        rounds: u64,
        /// Resources the overlapping callers share.
        #[arg(long, default_value_t = 8)]
        shared: u32,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Run on PostgreSQL: fresh schemas on this server (postgres://…),
        /// dropped afterwards. Default: SQLite files in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Small files written through the workspace by wasm agents (each write
    /// checked against a lease, fenced, atomic, journaled), against the same
    /// files written plainly by native callers.
    Workspace {
        /// Writers.
        #[arg(long, default_value_t = 64)]
        agents: u32,
        /// Files written in each mode.
        #[arg(long, default_value_t = 20_000)]
        writes: u64,
        /// Bytes per file.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Run on PostgreSQL: fresh schemas on this server (postgres://…),
        /// dropped afterwards. Default: SQLite files in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The live view (`wawe ui`) on a large environment: the time of a
    /// first paint's requests, each list's first page, a task's story, a
    /// filtered journal read, and updates reaching an open page.
    Ui {
        /// Agents in the environment (a tenth of them crashed).
        #[arg(long, default_value_t = 10_000)]
        agents: u64,
        /// Tasks in it, over 100 queues (most done, some dead, some waiting).
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// Journal events in it (value writes make up the rest).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Pages held open (each following the stream) while measuring.
        #[arg(long, default_value_t = 50)]
        pages: u32,
        /// Keep the filled environment as this new SQLite file (to open it
        /// with `wawe ui --env FILE`) instead of deleting it.
        #[arg(long, value_name = "FILE", conflicts_with = "env")]
        keep: Option<std::path::PathBuf>,
        /// Run on PostgreSQL: a fresh schema on this server (postgres://…),
        /// dropped afterwards. Default: a SQLite file in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A large swarm working: bench agents (wasm) each claiming with waits
    /// from one of many queues while pushers keep every queue fed; tasks/s,
    /// wake-up p99 and CPU per task, with 64 agents and with many in one run.
    Swarm {
        /// Agents in the large run (the small one has 64).
        #[arg(long, default_value_t = 10_000)]
        agents: u32,
        /// Queues the agents claim from (agent r from queue r % queues).
        #[arg(long, default_value_t = 100)]
        queues: u32,
        /// Tasks pushed in each run's throughput phase.
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// Tasks pushed one at a time (1 ms apart) in each run's wake-up
        /// phase, every agent waiting.
        #[arg(long, default_value_t = 2_000)]
        wake_rounds: u32,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Run on PostgreSQL: fresh schemas on this server (postgres://…),
        /// dropped afterwards. Default: SQLite files in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Instantiation time per agent and resident memory per live agent,
    /// with many agents alive at once, each blocked in a wait.
    Spawn {
        /// How many agents alive at once, one run per size, comma-separated.
        #[arg(long, value_delimiter = ',', default_values = ["1000", "10000"])]
        agents: Vec<u32>,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Push → a waiting claim holds the task: p50/p99 with the waiter in this
    /// process and in another process (another host) on the same environment.
    Wake {
        /// Pushes per kind of waiter.
        #[arg(long, default_value_t = 500)]
        rounds: usize,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Run on PostgreSQL: a fresh schema on this server (postgres://…),
        /// dropped afterwards. Default: a SQLite file in a temp dir.
        #[arg(long, value_name = "URL")]
        env: Option<EnvLocation>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The waiting side of `wake` in another process (used by `wake` itself).
    #[command(hide = true)]
    WakeWaiter {
        /// Wake-ups to wait for.
        #[arg(long)]
        rounds: usize,
        /// The environment the `wake` run uses.
        #[arg(long)]
        env: EnvLocation,
    },
}

/// Print a workload's report: one JSON object with `json`, else for people.
fn show<T: serde::Serialize>(report: &T, json: bool, human: impl FnOnce(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        human(report);
    }
    Ok(())
}

/// Run `wawe bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.workload {
        Workload::Tasks {
            agents,
            tasks,
            only,
            durability,
            env,
            pages,
            json,
        } => {
            anyhow::ensure!(
                pages == 0 || only.contains(&bench::Mode::Wasm),
                "--pages runs the wasm mode again with pages open: keep wasm in --only"
            );
            let place = Place::new(env)?;
            let r = bench::tasks(&place, agents, tasks, durability.into(), &only, pages).await?;
            show(&r, json, |r| {
                println!(
                    "tasks: push + claim + complete, {} tasks by {} callers ({}, durability {})",
                    r.tasks, r.agents, r.backend, r.durability
                );
                println!(
                    "  {:<8} {:>10} {:>12} {:>14}",
                    "mode", "seconds", "tasks/s", "commits/task"
                );
                for (name, t) in [("wasm", r.wasm), ("native", r.native), ("naive", r.naive)] {
                    let Some(t) = t else { continue };
                    println!(
                        "  {name:<8} {:>10.2} {:>12.0} {:>14.3}",
                        t.seconds, t.rate_per_s, t.commits_per_unit
                    );
                }
                // DESIGN.md's targets for SQLite; the PostgreSQL issue's for PostgreSQL.
                let (rate, naive) = match r.backend {
                    "postgres" => (12_000, 5),
                    _ => (50_000, 10),
                };
                if let Some(wasm) = r.wasm {
                    println!("  wasm {:.0} tasks/s (target >= {rate})", wasm.rate_per_s);
                }
                if let Some(ratio) = r.wasm_vs_native {
                    println!("  wasm/native {ratio:.2} (target >= 0.8)");
                }
                if let Some(ratio) = r.wasm_vs_naive {
                    println!("  wasm/naive {ratio:.1}x (target >= {naive}x)");
                }
                if let Some(p) = &r.with_pages {
                    println!(
                        "  wasm with {} live-view pages open: {:.0} tasks/s, {:.1}% slower \
                         (target <= 5%); {} frames and {} list fetches served, {:.0} KiB per page",
                        p.pages,
                        p.wasm.rate_per_s,
                        p.slowdown * 100.0,
                        p.frames,
                        p.fetches,
                        p.kib_per_page
                    );
                }
            })
        }
        Workload::Reservations {
            agents,
            rounds,
            shared,
            durability,
            env,
            json,
        } => {
            let place = Place::new(env)?;
            let r = bench::reservations(&place, agents, rounds, shared, durability.into()).await?;
            show(&r, json, |r| {
                println!(
                    "reservations: reserve + release, {} rounds by {} callers; overlapping callers share {} resources ({}, durability {})",
                    r.rounds, r.agents, r.shared_resources, r.backend, r.durability
                );
                println!(
                    "  {:<12} {:<7} {:>9} {:>10} {:>14} {:>8}",
                    "scenario", "mode", "seconds", "rounds/s", "commits/round", "queued"
                );
                for run in &r.runs {
                    println!(
                        "  {:<12} {:<7} {:>9.2} {:>10.0} {:>14.3} {:>8}",
                        run.scenario,
                        run.mode,
                        run.rate.seconds,
                        run.rate.rate_per_s,
                        run.rate.commits_per_unit,
                        run.waited
                    );
                }
            })
        }
        Workload::Workspace {
            agents,
            writes,
            size,
            durability,
            env,
            json,
        } => {
            let place = Place::new(env)?;
            let r = bench::workspace(&place, agents, writes, size, durability.into()).await?;
            show(&r, json, |r| {
                println!(
                    "workspace: {} files of {} bytes by {} writers ({}, durability {})",
                    r.writes, r.size, r.agents, r.backend, r.durability
                );
                println!("  {:<28} {:>10} {:>12}", "mode", "seconds", "writes/s");
                for (name, t) in [
                    ("guarded (wasm, workspace)", &r.guarded),
                    ("plain (native, in place)", &r.plain),
                    ("plain atomic (temp+rename)", &r.plain_atomic),
                ] {
                    println!("  {name:<28} {:>10.2} {:>12.0}", t.seconds, t.rate_per_s);
                }
                println!(
                    "  guarded/plain {:.2}, guarded/plain atomic {:.2}",
                    r.guarded_vs_plain, r.guarded_vs_plain_atomic
                );
            })
        }
        Workload::Swarm {
            agents,
            queues,
            tasks,
            wake_rounds,
            durability,
            env,
            json,
        } => {
            let place = Place::new(env)?;
            let r = bench::swarm(
                &place,
                agents,
                queues,
                tasks,
                wake_rounds,
                durability.into(),
            )
            .await?;
            show(&r, json, |r| {
                println!(
                    "swarm: agents claiming with waits over up to {} queues, {} tasks a run ({}, durability {})",
                    r.large.queues, r.large.tasks, r.backend, r.durability
                );
                println!(
                    "  {:>7} {:>7} {:>10} {:>13} {:>13} {:>13} {:>10} {:>9}",
                    "agents",
                    "queues",
                    "tasks/s",
                    "wake p50 ms",
                    "wake p99 ms",
                    "CPU µs/task",
                    "targeted",
                    "general"
                );
                for run in [&r.small, &r.large] {
                    println!(
                        "  {:>7} {:>7} {:>10.0} {:>13.2} {:>13.2} {:>13.1} {:>10} {:>9}",
                        run.agents,
                        run.queues,
                        run.throughput.rate_per_s,
                        run.wake.p50_us / 1000.0,
                        run.wake.p99_us / 1000.0,
                        run.cpu_us_per_task,
                        run.wakes.targeted,
                        run.wakes.general
                    );
                }
                println!(
                    "  {} agents / 64 agents: {:.2} of the throughput (target >= 0.90); wake p99 {:.2} ms (target <= 5 ms)",
                    r.large.agents,
                    r.throughput_ratio,
                    r.large.wake.p99_us / 1000.0
                );
            })
        }
        Workload::Ui {
            agents,
            tasks,
            events,
            pages,
            keep,
            env,
            json,
        } => {
            let place = Place::new(env)?;
            let r = bench::ui(&place, keep.as_deref(), agents, tasks, events, pages).await?;
            show(&r, json, |r| {
                println!(
                    "ui: the live view on {} agents, {} tasks, {} events ({}; filled in {:.0} s), {} pages open",
                    r.agents, r.tasks, r.events, r.backend, r.fill_seconds, r.pages
                );
                let ms = |us: f64| us / 1000.0;
                println!(
                    "  first paint's requests: p50 {:.1} ms, p99 {:.1} ms (target: first paint < 1 s)",
                    ms(r.first_paint.p50_us),
                    ms(r.first_paint.p99_us)
                );
                println!(
                    "  update, commit to page: p50 {:.1} ms, p99 {:.1} ms",
                    ms(r.update.p50_us),
                    ms(r.update.p99_us)
                );
                println!("  memory per open page: {:.0} KiB", r.kib_per_page);
                println!(
                    "  {:<48} {:>9} {:>9} {:>9}",
                    "request", "p50 ms", "p99 ms", "bytes"
                );
                for t in &r.requests {
                    println!(
                        "  {:<48} {:>9.1} {:>9.1} {:>9}",
                        t.path,
                        ms(t.latency.p50_us),
                        ms(t.latency.p99_us),
                        t.bytes
                    );
                }
            })
        }
        Workload::Spawn {
            agents,
            durability,
            json,
        } => {
            let dir = tempfile::tempdir()?;
            let r = bench::spawn(dir.path(), &agents, durability.into()).await?;
            show(&r, json, |r| {
                println!(
                    "spawn: agents alive at once, each blocked in a wait (durability {})",
                    r.durability
                );
                println!(
                    "  {:>7} {:>12} {:>16} {:>16} {:>16} {:>14}",
                    "agents",
                    "all waiting",
                    "instantiate p50",
                    "instantiate p99",
                    "resident/agent",
                    "mappings/agent"
                );
                for run in &r.runs {
                    println!(
                        "  {:>7} {:>11.2}s {:>14.0}us {:>14.0}us {:>13.1}KiB {:>14.1}",
                        run.agents,
                        run.all_waiting_s,
                        run.instantiation.p50_us,
                        run.instantiation.p99_us,
                        run.resident_kib_per_agent,
                        run.mappings_per_agent
                    );
                }
                println!(
                    "  targets: instantiation median <= 50us; <= 64 KiB resident per agent at 10,000"
                );
            })
        }
        Workload::Wake {
            rounds,
            durability,
            env,
            json,
        } => {
            let durability = Durability::from(durability);
            let place = Place::new(env)?;
            let exe = std::env::current_exe()?;
            let report = bench::wake(&place, &exe, rounds.max(1), durability).await?;
            show(&report, json, |report| {
                println!(
                    "wake: push -> a waiting claim holds the task ({}, durability {})",
                    report.backend, report.durability
                );
                println!(
                    "  {:<16} {:>8} {:>10} {:>10} {:>10}",
                    "waiter", "samples", "p50", "p99", "max"
                );
                for (name, l) in [
                    ("same process", report.same_process),
                    ("other process", report.other_process),
                ] {
                    println!(
                        "  {name:<16} {:>8} {:>8.0}us {:>8.0}us {:>8.0}us",
                        l.samples, l.p50_us, l.p99_us, l.max_us
                    );
                }
                let other = match report.backend {
                    "postgres" => "other host (process) p99 <= 10 ms",
                    _ => "other process p99 <= 20 ms",
                };
                println!("  targets: same process p99 <= 1 ms; {other}");
            })
        }
        Workload::WakeWaiter { rounds, env } => bench::run_waiter(&env, rounds).await,
    }
}
