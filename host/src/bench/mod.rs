//! Benchmarks that users can run on their own machines (`wawe bench`).
//!
//! Workloads: `tasks` (push + claim + complete through wasm, natively and
//! with one transaction per operation), `reservations` (reserve + release
//! churn, disjoint and overlapping), `spawn` (instantiation time and memory
//! per live agent) and `wake` (push until a waiting claim holds the task, in
//! this process and another). Each result names the durability it ran at.
//! BENCHMARKS.md has the figures.

mod guest;
mod reservations;
mod spawn;
mod tasks;
mod wake;

pub use reservations::{ReservationRun, ReservationsReport, reservations};
pub use spawn::{SpawnReport, SpawnRun, spawn};
pub use tasks::{Mode, TasksReport, Throughput, tasks};
pub use wake::{WakeReport, run_waiter, wake};

/// Run `callers` native callers on a fresh environment at `path`, caller
/// `n` as `caller(env, n)`, doing `units` units of work in all: the
/// environment (for checks afterwards) and how fast it went.
async fn run_native<F, Fut>(
    path: &std::path::Path,
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
