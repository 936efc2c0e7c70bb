//! The `swarm` workload: a large swarm working, not just waiting. Bench
//! agents (wasm) each claim from one of many queues with waits while
//! native pushers keep every queue fed; the same run is made with 64 agents
//! and with many, so the figures compare in one process on one machine.
//!
//! Each run has two phases on a fresh environment:
//! - **throughput**: every task is pushed as fast as the pushers can (all
//!   queues get work at once); timed until every task is done, with the
//!   process's CPU time over the same span;
//! - **wake-up**: with every agent waiting on an empty queue, tasks are
//!   pushed one at a time to queues in turn; each claim that was waiting
//!   when its task was pushed reports push → claim returned in the agent
//!   (the bench agent's `worker` workload).
//!
//! With targeted wake-ups a push wakes one claimer of its queue; the
//! report carries the wake tally, so a run shows whether commits woke
//! waiters they did not concern (general wake-ups).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::{Latency, Place, Throughput, discard, guest};
use crate::env::{
    AgentId, Durability, Env, EnvOptions, PushOptions, TaskQuery, TaskState, WakeTally,
};

/// What `wawe bench swarm` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwarmReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `normal` or `full`.
    pub durability: &'static str,
    /// The run with 64 agents.
    pub small: SwarmRun,
    /// The run with `--agents` agents.
    pub large: SwarmRun,
    /// The large run's tasks/s over the small run's.
    pub throughput_ratio: f64,
}

/// One run of the workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwarmRun {
    /// Bench agents working.
    pub agents: u32,
    /// Queues they claim from (agent `r` from queue `r % queues`).
    pub queues: u32,
    /// Tasks in the throughput phase.
    pub tasks: u64,
    /// Tasks pushed one at a time in the wake-up phase.
    pub wake_rounds: u32,
    /// The throughput phase.
    pub throughput: Throughput,
    /// Process CPU time (user + system) per task in the throughput phase, µs.
    pub cpu_us_per_task: f64,
    /// Push → claim returned in the agent, for claims that were waiting.
    pub wake: Latency,
    /// Waiters woken during the run, and how.
    pub wakes: WakeTally,
}

/// Pushers feeding the queues (each takes every `PUSHERS`-th queue), each
/// awaiting its pushes one at a time: enough that the claimers, not the
/// pushers, set the pace.
const PUSHERS: u32 = 64;
/// How long an agent's claim waits before it asks again.
const WAIT_MS: u64 = 60_000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU time this process has used, user and system, in µs.
fn cpu_us() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Run the workload: 64 agents, then `agents`, over `queues` queues, each
/// run with `tasks` tasks and then `wake_rounds` pushed one at a time, on
/// fresh environments of `place`.
pub async fn swarm(
    place: &Place,
    agents: u32,
    queues: u32,
    tasks: u64,
    wake_rounds: u32,
    durability: Durability,
) -> anyhow::Result<SwarmReport> {
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };
    let queues = queues.max(1);
    let small = run(place, "swarm-small", 64, queues, tasks, wake_rounds, &opts).await?;
    let large = run(
        place,
        "swarm-large",
        agents.max(1),
        queues,
        tasks,
        wake_rounds,
        &opts,
    )
    .await?;
    Ok(SwarmReport {
        backend: place.backend(),
        durability: durability.name(),
        throughput_ratio: large.throughput.rate_per_s / small.throughput.rate_per_s,
        small,
        large,
    })
}

async fn run(
    place: &Place,
    name: &str,
    agents: u32,
    queues: u32,
    tasks: u64,
    wake_rounds: u32,
    opts: &EnvOptions,
) -> anyhow::Result<SwarmRun> {
    // Every queue needs a claimer: fewer agents than queues use fewer queues.
    let queues = queues.min(agents);
    let path = place.fresh(name).await?;
    let env = Env::open(&path, opts.clone())?;
    let (host, module) = guest::start(env.clone(), place.dir()).await?;
    let handles: Vec<_> = (0..agents)
        .map(|r| {
            host.spawn(
                &module,
                guest::spec(
                    r,
                    guest::config([
                        ("workload", "worker".into()),
                        ("queue", format!("q{}", r % queues)),
                        ("wait_ms", WAIT_MS.to_string()),
                    ]),
                    Default::default(),
                ),
            )
        })
        .collect();
    wait_for_waiters(&env, agents as usize).await?;

    // Throughput: push everything, time until everything is done.
    let before = (env.commits(), env.wake_tally(), cpu_us());
    let started = Instant::now();
    let pushers: Vec<_> = (0..PUSHERS.min(queues))
        .map(|p| {
            let env = env.clone();
            let mine: Vec<u32> = (p..queues).step_by(PUSHERS.min(queues) as usize).collect();
            let share = tasks / u64::from(PUSHERS.min(queues))
                + u64::from(u64::from(p) < tasks % u64::from(PUSHERS.min(queues)));
            tokio::spawn(async move {
                let me = AgentId::new(format!("pusher-{p}"));
                for n in 0..share {
                    let queue = format!("q{}", mine[n as usize % mine.len()]);
                    env.push(&me, &queue, &now_us().to_string(), PushOptions::default())
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for p in pushers {
        p.await??;
    }
    wait_until_done(&env).await?;
    let took = started.elapsed();
    let cpu = cpu_us() - before.2;
    let throughput = Throughput::of(tasks, took, env.commits() - before.0);

    // Wake-up: one task at a time, to queues in turn, every agent waiting.
    wait_for_waiters(&env, agents as usize).await?;
    let me = AgentId::new("pusher-wake");
    for n in 0..wake_rounds {
        let queue = format!("q{}", (n * 7919) % queues);
        env.push(&me, &queue, &now_us().to_string(), PushOptions::default())
            .await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    wait_until_done(&env).await?;
    let after = env.wake_tally();

    host.shutdown().await?;
    for h in handles {
        h.join().await;
    }
    let wake = Latency::of(waited(&env, tasks).await?);
    discard(env).await?;
    Ok(SwarmRun {
        agents,
        queues,
        tasks,
        wake_rounds,
        throughput,
        cpu_us_per_task: cpu / tasks.max(1) as f64,
        wake,
        wakes: WakeTally {
            targeted: after.targeted - before.1.targeted,
            general: after.general - before.1.general,
            general_events: after.general_events - before.1.general_events,
        },
    })
}

/// Wait until `n` calls wait on the environment (every agent in its claim).
async fn wait_for_waiters(env: &Env, n: usize) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(600);
    while env.waiting_calls() < n {
        if Instant::now() > until {
            bail!(
                "only {} of {n} agents were waiting after 10 minutes",
                env.waiting_calls()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Wait until no task is ready or claimed (every pushed task done), looking
/// through two index lookups rather than counting.
async fn wait_until_done(env: &Env) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(600);
    let left = async |state| -> anyhow::Result<bool> {
        let one = TaskQuery {
            state: Some(state),
            limit: 1,
            ..TaskQuery::default()
        };
        Ok(!env.tasks_page(&one).await?.is_empty())
    };
    while left(TaskState::Ready).await? || left(TaskState::Claimed).await? {
        if Instant::now() > until {
            bail!("tasks were still waiting after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// The wake-up latencies the agents reported (µs) for tasks after `after`
/// (the wake-up phase's).
async fn waited(env: &Env, after: u64) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::new();
    let mut after = after;
    loop {
        let page = env
            .tasks_page(&TaskQuery {
                state: Some(TaskState::Done),
                after,
                limit: 1_000,
                ..TaskQuery::default()
            })
            .await
            .context("reading the results")?;
        let Some(last) = page.last() else {
            return Ok(samples);
        };
        after = last.id;
        samples.extend(
            page.iter()
                .filter_map(|t| t.result.as_deref()?.parse::<f64>().ok()),
        );
    }
}
