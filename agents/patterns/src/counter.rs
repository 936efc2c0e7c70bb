//! A shared counter with compare-and-swap: many agents add to one value and
//! no increment is lost, none counted twice, even across a crash.
//!
//! Each agent (`me` names it) adds 1 to `counter/total` `increments` times
//! with `values::update`, which reads the value and writes it back only if
//! nobody wrote in between, retrying otherwise. The agent's own progress is
//! kept in the same value, so each update moves the total and the agent's
//! count together, atomically.
//!
//! Worst moment: an agent crashes right after an update was written
//! (`crash = "true"`), before it could note anywhere that it did it. Its
//! restart reads its own count from the value and goes on from there: the
//! total ends at exactly agents × increments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wawe_sdk::values;
use wawe_sdk::{Config, RunResult};

/// The shared value: the total, and how much of it each agent has added.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    by: BTreeMap<String, u64>,
}

pub(crate) fn run(config: &Config) -> RunResult {
    let me = config.require("me")?.to_owned();
    let increments: u64 = config.parse("increments", 50)?;
    // Only this agent adds to its own count, so what the value says is where
    // it left off, also after a crash.
    let already = values::get_json::<Counter>("counter/total")?
        .and_then(|entry| entry.value.by.get(&me).copied())
        .unwrap_or(0);
    for _ in already..increments {
        let updated = values::update("counter/total", |old: Option<Counter>| {
            let mut counter = old.unwrap_or_default();
            *counter.by.entry(me.clone()).or_default() += 1;
            counter.total += 1;
            counter
        })?;
        if updated.value.by[&me] == increments / 2 && crate::crash_once(config, "counter") {
            panic!("counter: {me} crashed right after an update");
        }
    }
    Ok(())
}
