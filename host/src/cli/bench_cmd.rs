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
