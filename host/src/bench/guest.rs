//! The bench agent (`agents/bench`), built into the binary so that
//! `wawe bench` works from any directory, and a way to run many of it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Throughput;
use crate::env::{Env, EnvOptions};
use crate::runtime::{AgentSpec, Grants, Host, Limits, Module, RestartPolicy, RunEnd, Runtime};

/// The component `agents/bench` compiled to, embedded at build time.
const BENCH_WASM: &[u8] = include_bytes!(env!("WAWE_AGENT_BENCH"));

/// A runtime and host on `env` with the bench agent loaded (compiled under
/// `dir`, so the figures include no cache from earlier runs).
pub(super) async fn start(env: Env, dir: &Path) -> anyhow::Result<(Host, Module)> {
    start_inner(env, dir, None).await
}

/// Like [`start`], with the host given `workspace`.
pub(super) async fn start_with_workspace(
    env: Env,
    dir: &Path,
    workspace: crate::runtime::Workspace,
) -> anyhow::Result<(Host, Module)> {
    start_inner(env, dir, Some(workspace)).await
}

async fn start_inner(
    env: Env,
    dir: &Path,
    workspace: Option<crate::runtime::Workspace>,
) -> anyhow::Result<(Host, Module)> {
    let path = dir.join("bench.wasm");
    std::fs::write(&path, BENCH_WASM)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let runtime = Runtime::new(crate::runtime::RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        ..Default::default()
    })?;
    let module = runtime.load(&path)?;
    let host = runtime.start_with(env, workspace).await?;
    Ok((host, module))
}

/// The spec of replica `replica` of the bench agent with `config`.
pub(super) fn spec(replica: u32, config: Vec<(String, String)>, grants: Grants) -> AgentSpec {
    AgentSpec {
        name: "bench".into(),
        replica,
        // No quotas: the bench measures what the host can do, and its agents
        // call far faster than a default quota allows one agent to.
        limits: Limits {
            calls_per_second: 0,
            max_writes: None,
            max_pushes: None,
            max_learnings: None,
            ..Limits::default()
        },
        restart: RestartPolicy::Never,
        grants,
        config,
    }
}

/// Run `agents` replicas, replica `r` with `config(r)`, until every one has
/// ended; fails unless all of them returned ok. Returns the wall time from
/// the first spawn to the last end.
pub(super) async fn run_all(
    host: &Host,
    module: &Module,
    agents: u32,
    config: impl Fn(u32) -> Vec<(String, String)>,
) -> anyhow::Result<Duration> {
    run_all_with(host, module, agents, Grants::default(), config).await
}

/// Like [`run_all`], with every agent granted `grants`.
pub(super) async fn run_all_with(
    host: &Host,
    module: &Module,
    agents: u32,
    grants: Grants,
    config: impl Fn(u32) -> Vec<(String, String)>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let handles: Vec<_> = (0..agents)
        .map(|r| host.spawn(module, spec(r, config(r), grants.clone())))
        .collect();
    let mut failures = Vec::new();
    for handle in handles {
        let replica = handle.replica;
        match handle.join().await {
            RunEnd::Exited => {}
            end => failures.push(format!("bench.{replica}: {end:?}")),
        }
    }
    let took = started.elapsed();
    if !failures.is_empty() {
        bail!(
            "{} of {agents} bench agents did not finish: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(took)
}

/// Run `agents` replicas (replica `r` with `config(r)`) on a fresh
/// environment at `path`, each doing `units` units of work in all: the
/// environment (for checks afterwards) and how fast it went.
pub(super) async fn run_fresh(
    path: &crate::env::EnvLocation,
    opts: EnvOptions,
    dir: &Path,
    agents: u32,
    units: u64,
    config: impl Fn(u32) -> Vec<(String, String)>,
) -> anyhow::Result<(Env, Throughput)> {
    let env = Env::open(path, opts)?;
    let (host, module) = start(env.clone(), dir).await?;
    let before = env.commits();
    let took = run_all(&host, &module, agents, config).await?;
    let commits = env.commits() - before;
    host.shutdown().await?;
    Ok((env, Throughput::of(units, took, commits)))
}

/// `key=value` pairs as an agent's config.
pub(super) fn config<const N: usize>(pairs: [(&str, String); N]) -> Vec<(String, String)> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
