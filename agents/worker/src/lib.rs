//! `worker`: claims tasks from a queue until the producer's graph has ended.
//!
//! For each task: reserve its resources exclusively, do a deterministic
//! computation as large as its `cost`, write the result to `<queue>/data/<resource>`
//! fenced by the lease's token, lay a signal on `trail/<resource>`, endorse
//! another agent's learning about the resource, record its own, and complete
//! the task with a JSON result. A conflict or a stale token fails the task for
//! a retry. With nothing to claim, it ends once `<queue>/total` exists and all
//! the tasks listed there are done, dead or cancelled.
//!
//! Config: `queue` ("work"), `idle_ms` (2000, how long a claim waits),
//! `lease_ms` (10000, the claim's and the reservation's ttl), `reserve_wait_ms`
//! (5000), `work_scale` (20000, rounds of work per unit of cost).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::reservations::{self, LeaseGuard, Mode};
use wawe_sdk::tasks::{self, Task};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, Error, debug, info, learnings, signals, warn};

/// A task's payload, as the producer writes it.
#[derive(Deserialize)]
struct Payload {
    /// "leaf", "merge" or "final".
    kind: String,
    /// The resources to hold exclusively while working.
    resources: Vec<String>,
    /// How much work it is.
    cost: u32,
}

/// The producer's record of its graph in `<queue>/total`.
#[derive(Deserialize)]
struct Graph {
    /// The ids of every task in the graph.
    ids: Vec<u64>,
}

/// What the worker completes a task with.
#[derive(Serialize)]
struct Outcome<'a> {
    /// The result of the computation.
    checksum: u64,
    /// The resources it held.
    resources: &'a [String],
    /// The attempt that succeeded.
    attempt: u32,
    /// The fencing token its writes carried.
    fence: u64,
}

/// What `work_on` ran into: a reason to retry the task later, or a real error.
enum Setback {
    /// A conflict or a stale token: fail the task so it is retried.
    Retry(Error),
    /// Anything else ends the agent.
    Fatal(Error),
}

impl From<Error> for Setback {
    fn from(error: Error) -> Self {
        if error.is_conflict() || error.is_stale_token() {
            Setback::Retry(error)
        } else {
            Setback::Fatal(error)
        }
    }
}

/// The worker's settings and memory across tasks.
struct Worker {
    queue: String,
    lease: Duration,
    reserve_wait: Duration,
    work_scale: u64,
    /// The learnings this worker recorded (never endorse those).
    mine: HashSet<u64>,
}

/// A deterministic computation of `rounds` steps (xorshift over the seed).
fn crunch(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

impl Worker {
    /// True when the producer has recorded its graph and every task in it has ended.
    fn all_done(&self) -> Result<bool, Error> {
        let Some(values::Entry { value: graph, .. }) =
            values::get_json::<Graph>(&format!("{}/total", self.queue))?
        else {
            return Ok(false);
        };
        for id in graph.ids {
            if !tasks::get(id)?.state.is_final() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The work of one task under its lease: returns the checksum and the
    /// lease, still held, for the completion.
    fn prepare(&mut self, task: &Task, payload: &Payload) -> Result<(u64, LeaseGuard), Setback> {
        let lease = reservations::reserve(
            &payload.resources,
            Mode::Exclusive,
            self.lease,
            self.reserve_wait,
        )?;
        let checksum = crunch(task.id(), u64::from(payload.cost) * self.work_scale);

        for resource in &payload.resources {
            let key = format!("{}/data/{resource}", self.queue);
            let value = format!("{} {} {checksum:016x}", payload.kind, task.id());
            values::put(&key, &value, WriteOptions::new().fence(lease.token()))?;
            signals::deposit(&format!("trail/{resource}"), 1.0)?;
            self.endorse_one(resource)?;
            let body = format!(
                "task {} ({}) on {resource}: checksum {checksum:016x} after {} units of work",
                task.id(),
                payload.kind,
                payload.cost
            );
            let id = learnings::record(
                resource,
                &body,
                [self.queue.as_str(), payload.kind.as_str()],
            )?;
            self.mine.insert(id);
        }

        Ok((checksum, lease))
    }

    /// Endorses the best learning about `resource` that some other agent recorded.
    fn endorse_one(&self, resource: &str) -> Result<(), Error> {
        for learning in learnings::search(resource, 5)? {
            if self.mine.contains(&learning.id) {
                continue;
            }
            match learnings::endorse(learning.id) {
                Ok(count) => {
                    debug!("endorsed learning {} ({count} endorsements)", learning.id);
                    return Ok(());
                }
                // Recorded by an earlier run of this very agent: not ours to endorse.
                Err(Error::InvalidArgument(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The worker agent.
struct WorkerAgent;

impl Agent for WorkerAgent {
    fn run(config: Config) -> wawe_sdk::RunResult {
        let idle = Duration::from_millis(config.parse("idle_ms", 2000)?);
        let mut worker = Worker {
            queue: config.get_or("queue", "work").to_owned(),
            lease: Duration::from_millis(config.parse("lease_ms", 10_000)?),
            reserve_wait: Duration::from_millis(config.parse("reserve_wait_ms", 5000)?),
            work_scale: config.parse("work_scale", 20_000)?,
            mine: HashSet::new(),
        };
        let (mut completed, mut retried) = (0u32, 0u32);

        loop {
            let Some(task) = tasks::claim(&worker.queue, worker.lease, idle)? else {
                if worker.all_done()? {
                    break;
                }
                continue;
            };
            let payload: Payload = match task.json() {
                Ok(payload) => payload,
                Err(error) => {
                    warn!("task {}: bad payload, dropping it: {error}", task.id());
                    task.fail(&format!("bad payload: {error}"), false)?;
                    continue;
                }
            };
            let id = task.id();
            let done = match worker.prepare(&task, &payload) {
                // Completed while the lease is still held.
                Ok((checksum, lease)) => {
                    let outcome = Outcome {
                        checksum,
                        resources: &payload.resources,
                        attempt: task.attempt(),
                        fence: lease.token(),
                    };
                    task.complete_json(&outcome).map_err(Setback::from)
                }
                Err(Setback::Retry(error)) => {
                    info!("task {id}: {error}; failing it for a retry");
                    // A stale claim cannot be failed either: it is someone else's now.
                    if let Err(failed) = task.fail(&error.to_string(), true) {
                        warn!("task {id}: could not fail it: {failed}");
                    }
                    Err(Setback::Retry(error))
                }
                Err(fatal) => Err(fatal),
            };
            match done {
                Ok(()) => completed += 1,
                Err(Setback::Retry(_)) => retried += 1,
                Err(Setback::Fatal(error)) => return Err(format!("task {id}: {error}").into()),
            }
        }

        info!(
            "queue `{}` is finished: {completed} tasks completed here, {retried} handed back",
            worker.queue
        );
        Ok(())
    }
}

wawe_sdk::agent!(WorkerAgent);
