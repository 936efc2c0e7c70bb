//! Map/reduce with a barrier: the barrier is a task that depends on every
//! map task, so it becomes claimable only once all of them are done.
//!
//! `seed` splits its `text` into `chunks` map tasks and pushes one reduce
//! task that depends on all of them. `map` workers count the words of a
//! chunk and complete the task with the counts as its result. `reduce`
//! claims the barrier task (it waits, blocked, until every map is done),
//! reads each map task's result and writes the totals to `mapreduce/counts`.
//!
//! Worst moment: a mapper crashes after counting and before completing
//! (`crash = "true"`). Its task goes back to the queue; the reduce stays
//! blocked until the retry completes it. The counts are exact: a map's
//! output is its task's result, written in the same transaction that
//! completes it, so a crashed attempt leaves nothing behind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Config, RunResult, info};

#[derive(Serialize, Deserialize)]
struct Chunk {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Reduce {
    maps: Vec<u64>,
}

type Counts = BTreeMap<String, u64>;

pub(crate) fn run(config: &Config) -> RunResult {
    let lease = Duration::from_secs(30);
    match config.get_or("role", "map") {
        "seed" => {
            let text = config.require("text")?;
            let chunks: usize = config.parse("chunks", 4)?;
            let words: Vec<&str> = text.split_whitespace().collect();
            let per_chunk = words.len().div_ceil(chunks.max(1)).max(1);
            let mut maps = Vec::new();
            for (i, part) in words.chunks(per_chunk).enumerate() {
                let options = PushOptions::new().dedupe_key(format!("map/{i}"));
                let chunk = Chunk {
                    text: part.join(" "),
                };
                maps.push(tasks::push_json("mapreduce/map", &chunk, options)?.id);
            }
            // The barrier: ready only when every map task is done.
            let options = PushOptions::new()
                .dedupe_key("reduce")
                .depends_on(maps.iter().copied());
            tasks::push_json("mapreduce/reduce", &Reduce { maps }, options)?;
            Ok(())
        }
        "map" => loop {
            match tasks::claim_json::<Chunk>("mapreduce/map", lease, Duration::from_millis(300))? {
                Some((task, chunk)) => {
                    let mut counts = Counts::new();
                    for word in chunk.text.split_whitespace() {
                        *counts.entry(word.to_lowercase()).or_default() += 1;
                    }
                    if crate::crash_once(config, "mapreduce") {
                        panic!("mapreduce: crashed after counting, before completing the map task");
                    }
                    task.complete_json(&counts)?;
                }
                // The maps are over once the reduce has run.
                None if values::get("mapreduce/counts")?.is_some() => return Ok(()),
                None => {}
            }
        },
        "reduce" => {
            // Waits (without polling) until the barrier task is ready.
            let Some((task, reduce)) =
                tasks::claim_json::<Reduce>("mapreduce/reduce", lease, Duration::from_secs(60))?
            else {
                return Err("mapreduce: the reduce task never became ready".into());
            };
            let mut totals = Counts::new();
            for id in reduce.maps {
                let result = tasks::get(id)?.result.ok_or("a map task has no result")?;
                for (word, n) in serde_json::from_str::<Counts>(&result)? {
                    *totals.entry(word).or_default() += n;
                }
            }
            values::put_json("mapreduce/counts", &totals, WriteOptions::new())?;
            info!("reduced {} distinct words", totals.len());
            task.complete("")?;
            Ok(())
        }
        other => Err(format!("mapreduce: unknown role `{other}`").into()),
    }
}
