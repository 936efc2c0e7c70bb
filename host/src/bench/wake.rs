//! The `wake` workload: push a task while a claim waits on its queue, and
//! measure until the waiter holds it.
//!
//! The waiter is native (the environment's own `claim` with a wait): this
//! measures the wake mechanism itself. In the same process the push's commit
//! wakes the waiter through an in-process notification; across processes the
//! waiter's environment notices the commit on SQLite with `PRAGMA
//! data_version`, checked every
//! [`crate::env::EnvOptions::change_check_interval_ms`] while it waits, and on
//! PostgreSQL by the notification the commit sends (another process is
//! another host: its own connections and listener).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::{Latency, Place, discard};
use crate::env::{AgentId, Durability, Env, EnvLocation, EnvOptions, PushOptions};

/// What `wawe bench wake` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WakeReport {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// `normal` or `full`.
    pub durability: &'static str,
    /// Waiter in the pushing process.
    pub same_process: Latency,
    /// Waiter in another process on the same file.
    pub other_process: Latency,
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

const QUEUE: &str = "bench-wake";
const WAIT_MS: u64 = 10_000;

/// Run the workload: `rounds` pushes for each kind of waiter, in a fresh
/// environment of `place`. `exe` is the `wawe` binary, for the other process.
pub async fn wake(
    place: &Place,
    exe: &Path,
    rounds: usize,
    durability: Durability,
) -> anyhow::Result<WakeReport> {
    let opts = EnvOptions {
        durability,
        ..EnvOptions::default()
    };
    let path = place.fresh("wake").await?;
    let env = Env::open(&path, opts.clone())?;
    let me = AgentId::new("bench");

    // Same process: a waiting claim on a clone of the environment.
    let mut same = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let waiter = {
            let env = env.clone();
            tokio::spawn(async move {
                let task = env
                    .claim(&AgentId::new("waiter"), QUEUE, 60_000, WAIT_MS)
                    .await;
                (task, Instant::now())
            })
        };
        // Let the waiter block before pushing.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let pushed_at = Instant::now();
        env.push(&me, QUEUE, "", PushOptions::default()).await?;
        let (task, held_at) = waiter.await?;
        task?.context("the waiter timed out")?;
        same.push((held_at - pushed_at).as_secs_f64() * 1e6);
    }

    // Another process: `wawe bench wake-waiter` claims and reports, per task,
    // the wall-clock time it held it; each payload carries the push time.
    let mut child = Command::new(exe)
        .args([
            "bench",
            "wake-waiter",
            "--rounds",
            &rounds.to_string(),
            "--env",
            &path.to_env_arg(),
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the waiting process")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut other = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // The waiter says "ready" each time it is about to wait.
        match lines.next() {
            Some(Ok(l)) if l == "ready" => {}
            other => bail!("the waiting process said {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let pushed = now_us();
        env.push(&me, QUEUE, &pushed.to_string(), PushOptions::default())
            .await?;
        let line = lines.next().context("the waiting process ended")??;
        let (sent, held) = line
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?)))
            .with_context(|| format!("the waiting process said {line:?}"))?;
        other.push(held - sent);
    }
    let _ = child.wait();
    discard(env).await?;
    Ok(WakeReport {
        backend: place.backend(),
        durability: durability.name(),
        same_process: Latency::of(same),
        other_process: Latency::of(other),
    })
}

/// The other process's side: `rounds` times, say "ready", wait for a task,
/// and print its push time and the time it was held.
pub async fn run_waiter(path: &EnvLocation, rounds: usize) -> anyhow::Result<()> {
    let env = Env::open_existing(path, EnvOptions::default())?;
    let me = AgentId::new("waiter");
    let mut out = std::io::stdout();
    for _ in 0..rounds {
        writeln!(out, "ready")?;
        out.flush()?;
        let task = env
            .claim(&me, QUEUE, 60_000, WAIT_MS)
            .await?
            .context("no task arrived")?;
        let held = now_us();
        writeln!(out, "{} {held}", task.payload)?;
        out.flush()?;
    }
    Ok(())
}
