//! `bench`: the guest side of `wawe bench`, one workload per run.
//!
//! Config `workload`:
//! - `tasks`: `count` times push a task to `queue`, claim one (waiting for it)
//!   and complete it. Every call returns after its commit.
//! - `reservations`: `count` times reserve and release. Each round takes one
//!   of `resources` (comma-separated) exclusively, picked by `seed` and the
//!   round, waiting up to `wait_ms`. Resources shared with other agents make
//!   rounds conflict and queue.
//! - `wait`: wait once on `queue` for up to `wait_ms` (the spawn workload's
//!   idle agent), then end.
//! - `worker`: claim from `queue` (waiting up to `wait_ms` each time) and
//!   complete, until a claim finds nothing. Each task's payload is the wall
//!   time it was pushed (µs since the epoch); the result is how long the
//!   claim waited for it after the push (µs), or `-` when it was there
//!   already when the claim was made (no wake-up to measure).
//! - `workspace`: reserve the directory `dir` exclusively once, then write
//!   `count` small files of `size` bytes into it through the workspace
//!   (cycling over `files` names), each an atomic, fenced, journaled write.

use std::time::Duration;

use wawe_sdk::reservations::{self, Mode};
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::{Agent, Config};

fn tasks(config: &Config) -> Result<(), String> {
    let queue = config.get_or("queue", "bench");
    let count: u64 = config.parse("count", 1000)?;
    let lease = Duration::from_secs(60);
    let wait = Duration::from_secs(60);
    for _ in 0..count {
        tasks::push(queue, "", PushOptions::new()).map_err(|e| e.to_string())?;
        let task = tasks::claim(queue, lease, wait)
            .map_err(|e| e.to_string())?
            .ok_or("no task arrived within a minute")?;
        task.complete("").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn reservations(config: &Config) -> Result<(), String> {
    let count: u64 = config.parse("count", 1000)?;
    let seed: u64 = config.parse("seed", 0)?;
    let wait = Duration::from_millis(config.parse("wait_ms", 60_000)?);
    let resources: Vec<&str> = config.require("resources")?.split(',').collect();
    let ttl = Duration::from_secs(60);
    let mut conflicts = 0u64;
    for round in 0..count {
        let pick = resources[((seed + round) % resources.len() as u64) as usize];
        match reservations::reserve([pick], Mode::Exclusive, ttl, wait) {
            Ok(lease) => lease.release().map_err(|e| e.to_string())?,
            Err(e) if e.is_conflict() => conflicts += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    if conflicts > 0 {
        wawe_sdk::info!("{conflicts} reservations timed out in a conflict");
    }
    Ok(())
}

fn wait(config: &Config) -> Result<(), String> {
    let queue = config.get_or("queue", "bench-idle");
    let wait = Duration::from_millis(config.parse("wait_ms", 60_000)?);
    if let Some(task) =
        tasks::claim(queue, Duration::from_secs(60), wait).map_err(|e| e.to_string())?
    {
        task.complete("").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn worker(config: &Config) -> Result<(), String> {
    let queue = config.require("queue")?;
    let wait = Duration::from_millis(config.parse("wait_ms", 2_000)?);
    let lease = Duration::from_secs(60);
    loop {
        let asked = now_us();
        let Some(task) = tasks::claim(queue, lease, wait).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let got = now_us();
        let pushed: u64 = task.payload().parse().unwrap_or(0);
        let woken = if pushed > asked {
            (got - pushed).to_string()
        } else {
            "-".to_owned()
        };
        task.complete(&woken).map_err(|e| e.to_string())?;
    }
}

fn workspace(config: &Config) -> Result<(), String> {
    let dir = config.require("dir")?;
    let count: u64 = config.parse("count", 1000)?;
    let size: usize = config.parse("size", 256)?;
    let files: u64 = config.parse("files", 50)?;
    let ttl = Duration::from_secs(60);
    let lease = reservations::reserve([format!("{dir}/")], Mode::Exclusive, ttl, ttl)
        .map_err(|e| e.to_string())?;
    let mut content = vec![b'x'; size];
    for n in 0..count {
        content[..8].copy_from_slice(&n.to_le_bytes());
        let path = format!("{dir}/f{}", n % files);
        wawe_sdk::workspace::write(&lease, &path, &content).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct Bench;

impl Agent for Bench {
    fn run(config: Config) -> wawe_sdk::RunResult {
        match config.get_or("workload", "tasks") {
            "tasks" => tasks(&config),
            "reservations" => reservations(&config),
            "wait" => wait(&config),
            "worker" => worker(&config),
            "workspace" => workspace(&config),
            other => Err(format!("unknown workload `{other}`")),
        }?;
        Ok(())
    }
}

wawe_sdk::agent!(Bench);
