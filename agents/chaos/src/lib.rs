//! `chaos`: claims a task, reserves a resource, then ends the way `mode` says,
//! still holding both, so the host's clean-up can be checked.
//!
//! Modes: `panic` (panics with "chaos: deliberate panic"), `trap` (executes
//! `unreachable`), `loop` (spins forever), `memory` (allocates without
//! bound), `error` (returns `Err("chaos: deliberate error …")`), `exit`
//! (completes the task, then returns `Ok` with the lease still held).
//!
//! Config: `mode` ("panic"), `queue` ("work"), `after` (0: tasks to complete
//! normally first), `resource` (the lease's resource; default: the task
//! payload's `resources`, else "chaos"), `wait_ms` (10000, how long each claim
//! waits; an empty queue ends the agent with an error), `lease_ms` (30000).
//!
//! `crashes` (default: every run) limits how many runs crash, counted across
//! restarts in the shared value `counter` (default `chaos/<mode>/crashes`).
//! A run after the last crash works like a plain worker instead: it claims
//! tasks, holds their resources while it completes them, and returns `Ok`
//! once a claim comes back empty. That is how the demo shows crashes healing.

use std::time::Duration;

use serde::Deserialize;
use wawe_sdk::reservations::{self, Mode};
use wawe_sdk::tasks::{self, Task};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, info};

/// The part of a worker payload chaos cares about.
#[derive(Deserialize)]
struct Payload {
    /// The resources the task names.
    resources: Vec<String>,
}

/// How the agent ends once it holds a task and a lease.
#[derive(Clone, Copy, Debug)]
enum Crash {
    /// `panic!` with a recognisable message.
    Panic,
    /// A WebAssembly trap (`unreachable`).
    Trap,
    /// A busy loop that never calls the host.
    Loop,
    /// Unbounded allocation.
    Memory,
    /// An `Err` return.
    Error,
    /// A clean `Ok` return after completing the task.
    Exit,
}

impl Crash {
    /// Parses the `mode` config value.
    fn parse(mode: &str) -> Result<Crash, String> {
        Ok(match mode {
            "panic" => Crash::Panic,
            "trap" => Crash::Trap,
            "loop" => Crash::Loop,
            "memory" => Crash::Memory,
            "error" => Crash::Error,
            "exit" => Crash::Exit,
            other => {
                return Err(format!(
                    "unknown mode {other:?}: expected panic, trap, loop, memory, error or exit"
                ));
            }
        })
    }
}

/// Claims the next task of `queue`, or fails when none comes within `wait`.
fn next_task(queue: &str, lease: Duration, wait: Duration) -> Result<Task, String> {
    tasks::claim(queue, lease, wait)?
        .ok_or_else(|| format!("chaos: no task in `{queue}` within {wait:?}"))
}

/// Executes a WebAssembly `unreachable` instruction.
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Spins forever without calling the host.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates (and touches) 1 MiB after 1 MiB until the allocator fails.
fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Count one more crash in the shared value `counter`, unless `limit`
/// crashes were already counted; returns whether this run may crash.
fn take_a_crash(counter: &str, limit: u32) -> Result<bool, String> {
    loop {
        let (done, expected) = match values::get(counter)? {
            Some(v) => (v.value.parse::<u32>().unwrap_or(u32::MAX), v.version),
            None => (0, 0),
        };
        if done >= limit {
            info!("chaos: {done} of {limit} crashes done; working normally");
            return Ok(false);
        }
        let write = if expected == 0 {
            WriteOptions::new().if_absent()
        } else {
            WriteOptions::new().if_version(expected)
        };
        match values::put(counter, &(done + 1).to_string(), write) {
            Ok(_) => return Ok(true),
            // Another replica counted first: look again.
            Err(wawe_sdk::Error::VersionMismatch { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Claim tasks and complete them, holding their resources meanwhile, until a
/// claim comes back empty.
fn work_normally(queue: &str, lease: Duration, wait: Duration) -> Result<(), String> {
    while let Some(task) = tasks::claim(queue, lease, wait)? {
        let resources = match task.json::<Payload>() {
            Ok(payload) if !payload.resources.is_empty() => payload.resources,
            _ => vec!["chaos".to_owned()],
        };
        let guard = match reservations::reserve(resources, Mode::Exclusive, lease, wait) {
            Ok(guard) => guard,
            Err(e) if e.is_conflict() => {
                task.fail(&format!("chaos: resources busy: {e}"), true)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        task.complete(r#"{"by":"chaos","normal":true}"#)?;
        guard.release()?;
    }
    Ok(())
}

/// The chaos agent.
struct Chaos;

impl Agent for Chaos {
    // Kept out of line, so that crash backtraces name it even in an LTO build.
    #[inline(never)]
    fn run(config: Config) -> wawe_sdk::RunResult {
        let mode = config.get_or("mode", "panic");
        let crash = Crash::parse(mode)?;
        let queue = config.get_or("queue", "work");
        let after: u32 = config.parse("after", 0)?;
        let wait = Duration::from_millis(config.parse("wait_ms", 10_000)?);
        let lease = Duration::from_millis(config.parse("lease_ms", 30_000)?);
        if let Some(limit) = config.get("crashes") {
            let limit: u32 = limit
                .parse()
                .map_err(|e| format!("config `crashes` = {limit:?}: {e}"))?;
            let default_counter = format!("chaos/{mode}/crashes");
            let counter = config.get_or("counter", &default_counter);
            if !take_a_crash(counter, limit)? {
                return Ok(work_normally(queue, lease, wait)?);
            }
        }

        for n in 1..=after {
            let task = next_task(queue, lease, wait)?;
            let id = task.id();
            task.complete(r#"{"by":"chaos","normal":true}"#)?;
            info!("chaos: completed task {id} normally ({n} of {after})");
        }

        let task = next_task(queue, lease, wait)?;
        let resources = match config.get("resource") {
            Some(resource) => vec![resource.to_owned()],
            None => match task.json::<Payload>() {
                Ok(payload) if !payload.resources.is_empty() => payload.resources,
                _ => vec!["chaos".to_owned()],
            },
        };
        // Kept past the guard: the host must release it when the agent ends.
        let held = reservations::reserve(resources, Mode::Exclusive, lease, wait)?.into_lease();
        info!(
            "chaos: mode {crash:?} on task {} (attempt {}) holding lease {} on {:?}",
            task.id(),
            task.attempt(),
            held.id,
            held.resources
        );

        match crash {
            Crash::Panic => panic!(
                "chaos: deliberate panic (task {}, lease {})",
                task.id(),
                held.id
            ),
            Crash::Trap => trap(),
            Crash::Loop => spin(),
            Crash::Memory => hog(),
            Crash::Error => Err(format!(
                "chaos: deliberate error (task {}, lease {})",
                task.id(),
                held.id
            )
            .into()),
            Crash::Exit => {
                task.complete(r#"{"by":"chaos","normal":false}"#)?;
                Ok(())
            }
        }
    }
}

wawe_sdk::agent!(Chaos);
