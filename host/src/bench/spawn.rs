//! The `spawn` workload: how fast agents start and how much memory each
//! costs while it lives, blocked in a wait as most agents of a swarm are.
//!
//! For each size, that many bench agents are spawned at once; each claims on
//! an empty queue with a long wait. Once all of them wait, the process's
//! resident memory is read again: the growth divided by the agents is the
//! memory per live agent (its instance, stack, store and supervision). The
//! host records how long each instantiation took.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Latency, guest};
use crate::env::{Durability, Env, EnvOptions};

/// What `wawe bench spawn` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpawnReport {
    /// `normal` or `full`.
    pub durability: &'static str,
    /// One line per size.
    pub runs: Vec<SpawnRun>,
}

/// One size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpawnRun {
    /// Agents alive at once.
    pub agents: u32,
    /// From the first spawn until all of them wait, in seconds.
    pub all_waiting_s: f64,
    /// Instantiation time per agent, in microseconds.
    pub instantiation: Latency,
    /// Resident memory growth per live agent, in KiB.
    pub resident_kib_per_agent: f64,
    /// Memory mappings added per live agent (the kernel allows a process
    /// `vm.max_map_count`, 65,530 by default, in all).
    pub mappings_per_agent: f64,
}

const QUEUE: &str = "bench-idle";
const WAIT_MS: u64 = 600_000;

/// Spawn each of `sizes` agents in turn on one host, on a fresh SQLite file
/// under `dir`, largest first: a later, smaller run reuses heap the earlier one
/// freed, so only the first run starts from a clean process, and the
/// largest size is the one the memory target is about.
pub async fn spawn(
    dir: &Path,
    sizes: &[u32],
    durability: Durability,
) -> anyhow::Result<SpawnReport> {
    let env = Env::open(
        dir.join("spawn.db"),
        EnvOptions {
            durability,
            ..EnvOptions::default()
        },
    )?;
    let (host, module) = guest::start(env.clone(), dir).await?;
    let waiting = |n: u32| {
        guest::config([
            ("workload", "wait".into()),
            ("queue", QUEUE.into()),
            ("wait_ms", n.to_string()),
        ])
    };
    // Warm up: one short run, so code paths and pools are in place before
    // anything is counted.
    guest::run_all(&host, &module, 1, |_| waiting(0)).await?;
    host.take_instantiation_times();

    let mut sizes = sizes.to_vec();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut runs = Vec::new();
    for agents in sizes {
        let before = resident_bytes()?;
        let maps_before = mappings()?;
        let ops_before = env.operations();
        let instances_before = host.instantiations();
        let started = Instant::now();
        let handles: Vec<_> = (0..agents)
            .map(|r| {
                host.spawn(
                    &module,
                    guest::spec(r, waiting(WAIT_MS as u32), Default::default()),
                )
            })
            .collect();
        // Each agent is instantiated, then writes twice before it waits: its
        // start, and a claim that finds nothing. Then it reads once and sleeps.
        let want_instances = instances_before + u64::from(agents);
        let want_ops = ops_before + 2 * u64::from(agents);
        let deadline = Instant::now() + Duration::from_secs(300);
        while host.instantiations() < want_instances || env.operations() < want_ops {
            if Instant::now() > deadline {
                bail!(
                    "{} of {agents} agents were instantiated after 5 minutes",
                    host.instantiations() - instances_before
                );
            }
            if handles.iter().any(|h| h.is_finished()) {
                bail!("a waiting agent ended early: is the queue `{QUEUE}` empty?");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the last ones reach their wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let all_waiting = started.elapsed();
        let after = resident_bytes()?;
        let maps_after = mappings()?;
        let times = host.take_instantiation_times();
        for handle in &handles {
            handle.stop();
        }
        for handle in handles {
            handle.join().await;
        }
        runs.push(SpawnRun {
            agents,
            all_waiting_s: all_waiting.as_secs_f64(),
            instantiation: Latency::of(times.iter().map(|d| d.as_secs_f64() * 1e6).collect()),
            resident_kib_per_agent: after.saturating_sub(before) as f64
                / 1024.0
                / f64::from(agents.max(1)),
            mappings_per_agent: maps_after.saturating_sub(maps_before) as f64
                / f64::from(agents.max(1)),
        });
    }
    host.shutdown().await?;
    env.close();
    Ok(SpawnReport {
        durability: durability.name(),
        runs,
    })
}

/// This process's resident memory, from `/proc/self/statm`.
fn resident_bytes() -> anyhow::Result<u64> {
    let statm =
        std::fs::read_to_string("/proc/self/statm").context("cannot read /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .context("unexpected /proc/self/statm")?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page).unwrap_or(4096))
}

/// How many memory mappings this process has, from `/proc/self/maps`.
fn mappings() -> anyhow::Result<u64> {
    let maps = std::fs::read("/proc/self/maps").context("cannot read /proc/self/maps")?;
    Ok(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}
