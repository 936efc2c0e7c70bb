//! The coordination patterns of the guide for agent authors
//! (`docs/agents.md`), one module per pattern, each runnable with its swarm
//! manifest in `docs/patterns/`. The `pattern` config picks the module and
//! `role` the part an agent plays in it; `crash` makes an agent crash once,
//! at the pattern's worst moment, to show what the environment does then.

mod backpressure;
mod counter;
mod election;
mod mapreduce;
mod pipeline;
mod pool;

use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, RunResult, tasks};

struct Patterns;

impl Agent for Patterns {
    fn run(config: Config) -> RunResult {
        match config.require("pattern")? {
            "pool" => pool::run(&config),
            "pipeline" => pipeline::run(&config),
            "mapreduce" => mapreduce::run(&config),
            "election" => election::run(&config),
            "backpressure" => backpressure::run(&config),
            "counter" => counter::run(&config),
            other => Err(format!("unknown pattern `{other}`").into()),
        }
    }
}

wawe_sdk::agent!(Patterns);

/// Whether this agent should crash now: true the first time `key` is asked
/// for across all runs and restarts (a value written only if absent), when
/// the agent's config says `crash = "true"`.
pub(crate) fn crash_once(config: &Config, key: &str) -> bool {
    config.get("crash") == Some("true")
        && values::put(
            &format!("crashed/{key}"),
            "1",
            WriteOptions::new().if_absent(),
        )
        .is_ok()
}

/// Follows the tasks whose ids are recorded in a value until all of them
/// are over. It remembers how far it got: a task that has ended never runs
/// again, so each is asked about until it has ended, and not after.
pub(crate) struct Ending {
    key: &'static str,
    ids: Option<Vec<u64>>,
    next: usize,
}

impl Ending {
    /// The tasks listed in value `key` (written once they are all pushed).
    pub(crate) fn new(key: &'static str) -> Self {
        Ending {
            key,
            ids: None,
            next: 0,
        }
    }

    /// Whether every task has ended (done, dead or cancelled); false while
    /// the list is not written yet.
    pub(crate) fn all(&mut self) -> wawe_sdk::Result<bool> {
        self.all_with(|id| Ok(tasks::get(id)?.state.is_final()))
    }

    /// Whether `over` holds for every task, asked in order from the first
    /// one it did not hold for last time.
    pub(crate) fn all_with(
        &mut self,
        mut over: impl FnMut(u64) -> wawe_sdk::Result<bool>,
    ) -> wawe_sdk::Result<bool> {
        if self.ids.is_none() {
            self.ids = values::get_json::<Vec<u64>>(self.key)?.map(|entry| entry.value);
        }
        let Some(ids) = &self.ids else {
            return Ok(false);
        };
        while let Some(&id) = ids.get(self.next) {
            if !over(id)? {
                return Ok(false);
            }
            self.next += 1;
        }
        Ok(true)
    }
}
