//! `wawe bench`: measure wawe on this machine.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::DurabilityArg;
use crate::bench;
use crate::env::Durability;

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
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Push → a waiting claim holds the task: p50/p99 with the waiter in this
    /// process and in another process on the same file.
    Wake {
        /// Pushes per kind of waiter.
        #[arg(long, default_value_t = 500)]
        rounds: usize,
        /// Commit durability: normal (synchronous=NORMAL) or full.
        #[arg(long, value_enum, default_value = "normal")]
        durability: DurabilityArg,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The waiting side of `wake` in another process (used by `wake` itself).
    #[command(hide = true)]
    WakeWaiter {
        #[arg(long)]
        rounds: usize,
        #[arg(long)]
        env: PathBuf,
    },
}

/// Run `wawe bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.workload {
        Workload::Tasks {
            agents,
            tasks,
            only,
            durability,
            json,
        } => {
            let dir = tempfile::tempdir()?;
            let r = bench::tasks(dir.path(), agents, tasks, durability.into(), &only).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
                return Ok(());
            }
            println!(
                "tasks: push + claim + complete, {} tasks by {} callers (durability {})",
                r.tasks, r.agents, r.durability
            );
            println!(
                "  {:<8} {:>10} {:>12} {:>14}",
                "mode", "seconds", "tasks/s", "commits/task"
            );
            for (name, t) in [("wasm", r.wasm), ("native", r.native), ("naive", r.naive)] {
                let Some(t) = t else { continue };
                println!(
                    "  {name:<8} {:>10.2} {:>12.0} {:>14.3}",
                    t.seconds, t.tasks_per_s, t.commits_per_task
                );
            }
            if let Some(wasm) = r.wasm {
                println!("  wasm {:.0} tasks/s (target >= 50000)", wasm.tasks_per_s);
            }
            if let Some(ratio) = r.wasm_vs_native {
                println!("  wasm/native {ratio:.2} (target >= 0.8)");
            }
            if let Some(ratio) = r.wasm_vs_naive {
                println!("  wasm/naive {ratio:.1}x (target >= 10x)");
            }
            Ok(())
        }
        Workload::Wake {
            rounds,
            durability,
            json,
        } => {
            let durability = Durability::from(durability);
            let dir = tempfile::tempdir()?;
            let exe = std::env::current_exe()?;
            let report = bench::wake(dir.path(), &exe, rounds.max(1), durability).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "wake: push -> a waiting claim holds the task (durability {})",
                    report.durability
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
            }
            Ok(())
        }
        Workload::WakeWaiter { rounds, env } => bench::run_waiter(&env, rounds).await,
    }
}
