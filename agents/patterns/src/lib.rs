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

/// Whether every task in `ids` has ended (done, dead or cancelled).
pub(crate) fn all_final(ids: &[u64]) -> wawe_sdk::Result<bool> {
    for &id in ids {
        if !tasks::get(id)?.state.is_final() {
            return Ok(false);
        }
    }
    Ok(true)
}
