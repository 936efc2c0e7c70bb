//! `producer`: pushes a graph of dependent tasks into a queue, records the
//! graph in the value `<queue>/total`, then waits on the journal until every
//! task it pushed is done, dead or cancelled, and logs a summary.
//!
//! Config: `queue` ("work"), `tasks` (20, total tasks in the graph),
//! `resources` (4, how many `files/<n>` resources the payloads spread over),
//! `timeout_ms` (0 = wait as long as it takes), `max_attempts` (0 = the
//! environment's default: attempts each task gets before it is dead).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wawe_sdk::events::{self, Filter};
use wawe_sdk::tasks::{self, PushOptions, TaskState};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, info, warn};

/// What a task asks of a worker (the same shape the worker and chaos agents read).
#[derive(Serialize)]
struct Payload {
    /// "leaf", "merge" or "final".
    kind: &'static str,
    /// Position among the tasks of its kind.
    index: u32,
    /// The resources to hold exclusively while working: one or two `files/<n>`.
    resources: Vec<String>,
    /// How much work it is (1..=10).
    cost: u32,
}

/// The graph as recorded in `<queue>/total`, for workers to know when all is over.
#[derive(Serialize, Deserialize)]
struct Graph {
    /// How many tasks the graph has.
    total: u32,
    /// Their ids, leaves first, then merges, then the final task.
    ids: Vec<u64>,
}

/// The most dependencies one task may name (the environment's default
/// `max_resources`): the final task depends on every merge, so there are at
/// most this many merges.
const MAX_DEPENDENCIES: u32 = 64;

/// How many leaf and merge tasks a graph of `total` tasks has (plus one final
/// task): about one merge per five tasks, at most [`MAX_DEPENDENCIES`].
fn shape(total: u32) -> (u32, u32) {
    match total {
        0 | 1 => (0, 0),
        2 => (1, 0),
        _ => {
            let merges = ((total - 1) / 5).clamp(1, MAX_DEPENDENCIES);
            (total - 1 - merges, merges)
        }
    }
}

/// The resource name of file `n`.
fn file(n: u32) -> String {
    format!("files/{n}")
}

/// Pushes one task with a dedupe key, logging when it was already there.
fn push(
    queue: &str,
    key: String,
    payload: &Payload,
    deps: &[u64],
    max_attempts: u32,
) -> Result<u64, String> {
    let options = PushOptions::new()
        .max_attempts(max_attempts)
        .dedupe_key(format!("{queue}/{key}"))
        .depends_on(deps.iter().copied());
    let pushed = tasks::push_json(queue, payload, options)?;
    if pushed.deduplicated {
        info!("{key}: already pushed as task {}", pushed.id);
    }
    Ok(pushed.id)
}

/// Pushes the graph: leaves, merges over groups of leaves, one final task over the merges.
fn push_graph(
    queue: &str,
    total: u32,
    resources: u32,
    max_attempts: u32,
) -> Result<Vec<u64>, String> {
    let (leaves, merges) = shape(total);
    let mut ids = Vec::with_capacity(total as usize);

    let mut leaf_ids = Vec::new();
    for i in 0..leaves {
        let payload = Payload {
            kind: "leaf",
            index: i,
            resources: vec![file(i % resources)],
            cost: 1 + (i * 7) % 5,
        };
        leaf_ids.push(push(
            queue,
            format!("leaf/{i}"),
            &payload,
            &[],
            max_attempts,
        )?);
    }
    ids.extend(&leaf_ids);

    let mut merge_ids = Vec::new();
    for j in 0..merges {
        // Leaves are dealt round-robin into the merges' groups.
        let group: Vec<u64> = leaf_ids
            .iter()
            .skip(j as usize)
            .step_by(merges as usize)
            .copied()
            .collect();
        let (a, b) = (j % resources, (j + 1) % resources);
        let mut names = vec![file(a)];
        if b != a {
            names.push(file(b));
        }
        let payload = Payload {
            kind: "merge",
            index: j,
            resources: names,
            cost: 3,
        };
        merge_ids.push(push(
            queue,
            format!("merge/{j}"),
            &payload,
            &group,
            max_attempts,
        )?);
    }
    ids.extend(&merge_ids);

    let deps = if merge_ids.is_empty() {
        &leaf_ids
    } else {
        &merge_ids
    };
    let payload = Payload {
        kind: "final",
        index: 0,
        resources: vec![file(0)],
        cost: 5,
    };
    ids.push(push(
        queue,
        "final".to_owned(),
        &payload,
        deps,
        max_attempts,
    )?);
    Ok(ids)
}

/// The producer agent.
struct Producer;

impl Agent for Producer {
    fn run(config: Config) -> wawe_sdk::RunResult {
        let queue = config.get_or("queue", "work");
        let total: u32 = config.parse("tasks", 20)?;
        let resources: u32 = config.parse("resources", 4)?;
        let timeout = Duration::from_millis(config.parse("timeout_ms", 0)?);
        let max_attempts: u32 = config.parse("max_attempts", 0)?;
        if total == 0 || resources == 0 {
            return Err("config `tasks` and `resources` must be at least 1".into());
        }
        let started = Instant::now();
        let total_key = format!("{queue}/total");

        // A producer restarted after the graph was recorded reuses it; one
        // restarted while pushing gets its earlier tasks back through the dedupe keys.
        let ids = match values::get_json::<Graph>(&total_key)? {
            Some(values::Entry { value: graph, .. }) => {
                info!("graph of {} tasks already pushed to `{queue}`", graph.total);
                graph.ids
            }
            None => {
                let ids = push_graph(queue, total, resources, max_attempts)?;
                let graph = Graph { total, ids };
                values::put_json(&total_key, &graph, WriteOptions::new())?;
                info!("pushed a graph of {total} tasks to `{queue}`");
                graph.ids
            }
        };

        // Take the journal position before each check, so no change is missed.
        let filter = Filter::kind("task.");
        let states = loop {
            let seen = events::latest()?;
            let states = ids
                .iter()
                .map(|&id| tasks::get(id).map(|task| task.state))
                .collect::<Result<Vec<_>, _>>()?;
            let open = states.iter().filter(|state| !state.is_final()).count();
            if open == 0 {
                break states;
            }
            if !timeout.is_zero() && started.elapsed() >= timeout {
                warn!(
                    "gave up after {timeout:?}: {open} of {} tasks still open",
                    ids.len()
                );
                return Err(format!("{open} tasks still open after {timeout:?}").into());
            }
            events::wait(seen, &filter, Duration::from_secs(5))?;
        };

        let count = |wanted: TaskState| states.iter().filter(|&&s| s == wanted).count();
        info!(
            "all {} tasks of `{queue}` ended in {:?}: {} done, {} dead, {} cancelled",
            ids.len(),
            started.elapsed(),
            count(TaskState::Done),
            count(TaskState::Dead),
            count(TaskState::Cancelled)
        );
        Ok(())
    }
}

wawe_sdk::agent!(Producer);

#[cfg(test)]
mod tests {
    use super::{MAX_DEPENDENCIES, shape};

    #[test]
    fn shapes_add_up() {
        for total in 1..100 {
            let (leaves, merges) = shape(total);
            assert_eq!(leaves + merges + 1, total);
            assert!(merges <= leaves);
        }
        assert_eq!(shape(20), (16, 3));
        // Large graphs: every dependency list (the final task's, and each
        // merge's group of leaves) stays within the limit.
        for total in [600, 2_000, 4_000] {
            let (leaves, merges) = shape(total);
            assert_eq!(leaves + merges + 1, total);
            assert!(merges <= MAX_DEPENDENCIES && leaves.div_ceil(merges) <= MAX_DEPENDENCIES);
        }
    }
}
