//! Benchmarks that users can run on their own machines (`wawe bench`).
//!
//! Workloads: `tasks` (push + claim + complete through wasm, natively and
//! with one transaction per operation), `reservations` (reserve + release
//! churn, disjoint and overlapping), `spawn` (instantiation time and memory
//! per live agent) and `wake` (push until a waiting claim holds the task, in
//! this process and another) and `workspace` (small files written through the
//! workspace by wasm agents, against plain native writes) and `ui` (the live
//! view on a large environment) and `swarm` (thousands of agents claiming
//! from many queues while pushers feed them). Each result names the durability and the
//! backend it ran on: SQLite files in a temp dir, or, given `--env
//! postgres://…`, fresh schemas on that server (dropped afterwards).
//! BENCHMARKS.md has the figures.

use anyhow::Context;

mod guest;
mod pages;
mod reservations;
mod spawn;
mod swarm;
mod tasks;
mod ui;
mod wake;
mod workspace;

pub use reservations::{ReservationRun, ReservationsReport, reservations};
pub use spawn::{SpawnReport, SpawnRun, spawn};
pub use swarm::{SwarmReport, SwarmRun, swarm};
pub use tasks::{Mode, PagesRun, TasksReport, Throughput, tasks};
pub use ui::{Timed, UiReport, ui};
pub use wake::{WakeReport, run_waiter, wake};
pub use workspace::{WorkspaceReport, workspace};

/// Where a workload makes its fresh environments: files in a temp dir (the
/// embedded default), or schemas on a PostgreSQL server.
pub struct Place {
    dir: tempfile::TempDir,
    server: Option<String>,
}

impl Place {
    /// Files in a new temp dir, or schemas on `server` (a `postgres://` URL).
    pub fn new(server: Option<crate::env::EnvLocation>) -> anyhow::Result<Place> {
        let server = match server {
            None => None,
            Some(crate::env::EnvLocation::Postgres(url)) => Some(url),
            Some(crate::env::EnvLocation::File(p)) => anyhow::bail!(
                "--env takes a postgres:// URL ({} is a file): on SQLite, benchmarks make \
                 fresh files in a temp dir of their own",
                p.display()
            ),
        };
        Ok(Place {
            dir: tempfile::tempdir()?,
            server,
        })
    }

    /// A scratch directory (the compile cache of the bench agent).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.server.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Where a fresh environment named `name` goes; on PostgreSQL a schema
    /// left from an earlier run under that name is dropped first.
    pub async fn fresh(&self, name: &str) -> anyhow::Result<crate::env::EnvLocation> {
        let Some(server) = &self.server else {
            return Ok(crate::env::EnvLocation::File(
                self.dir.path().join(format!("{name}.db")),
            ));
        };
        let schema: String = format!("wawe_bench_{name}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let at = crate::env::EnvLocation::Postgres(server.clone())
            .with_schema(&schema)
            .with_context(|| format!("{server} is not a usable URL"))?;
        match crate::env::Env::open_existing(&at, crate::env::EnvOptions::default()) {
            Ok(old) => old.destroy().await?,
            Err(crate::env::OpenError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(at)
    }
}

/// A run is over: delete its environment (a PostgreSQL schema would outlive
/// the temp dir).
async fn discard(env: crate::env::Env) -> anyhow::Result<()> {
    Ok(env.destroy().await?)
}

/// Run `callers` native callers on a fresh environment at `path`, caller
/// `n` as `caller(env, n)`, doing `units` units of work in all: the
/// environment (for checks afterwards) and how fast it went.
async fn run_native<F, Fut>(
    path: &crate::env::EnvLocation,
    opts: crate::env::EnvOptions,
    callers: u32,
    units: u64,
    caller: F,
) -> anyhow::Result<(crate::env::Env, Throughput)>
where
    F: Fn(crate::env::Env, u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let env = crate::env::Env::open(path, opts)?;
    let before = env.commits();
    let started = std::time::Instant::now();
    let running: Vec<_> = (0..callers)
        .map(|n| tokio::spawn(caller(env.clone(), n)))
        .collect();
    for one in running {
        one.await??;
    }
    let rate = Throughput::of(units, started.elapsed(), env.commits() - before);
    Ok((env, rate))
}

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    /// How many samples.
    pub samples: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Worst.
    pub max_us: f64,
}

impl Latency {
    /// Summarize samples in microseconds.
    pub fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            samples: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: *samples.last().unwrap_or(&0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.samples, l.p50_us, l.p99_us, l.max_us),
            (100, 51.0, 99.0, 100.0)
        );
        assert_eq!(Latency::of(vec![]).samples, 0);
    }
}
