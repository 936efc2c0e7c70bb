//! A pipeline of queues: each stage claims from its queue, does its part and
//! pushes the item on to the next stage's queue.
//!
//! `seed` pushes `items` numbers to `pipeline/raw`; `double` claims them and
//! pushes twice the number to `pipeline/doubled` (completing with the id of
//! the task it pushed); `store` claims those and
//! writes `pipeline/out/<item>`. Stages run at their own pace; a queue
//! between them absorbs the difference.
//!
//! Worst moment: a `double` worker crashes after pushing downstream and
//! before completing its own task (`crash = "true"`). The task is retried
//! and pushes again. The downstream push carries a dedupe key, so while the
//! first push is still queued the second returns it; if `store` already
//! finished it, a duplicate does get through, and `store` writes by item
//! key, so the duplicate writes the same value again. Exactly-once effects
//! come from idempotent writes, not from the queues.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Config, RunResult};

#[derive(Serialize, Deserialize)]
struct Item {
    item: u64,
    value: u64,
}

pub(crate) fn run(config: &Config) -> RunResult {
    let items: u64 = config.parse("items", 20)?;
    let lease = Duration::from_secs(30);
    let idle = Duration::from_millis(300);
    let mut through = crate::Ending::new("pipeline/ids");
    match config.get_or("role", "double") {
        "seed" => {
            let mut ids = Vec::new();
            for item in 1..=items {
                let options = PushOptions::new().dedupe_key(format!("raw/{item}"));
                ids.push(
                    tasks::push_json("pipeline/raw", &Item { item, value: item }, options)?.id,
                );
            }
            values::put_json("pipeline/ids", &ids, WriteOptions::new())?;
            Ok(())
        }
        "double" => loop {
            match tasks::claim_json::<Item>("pipeline/raw", lease, idle)? {
                Some((task, Item { item, value })) => {
                    let next = Item {
                        item,
                        value: value * 2,
                    };
                    let options = PushOptions::new().dedupe_key(format!("doubled/{item}"));
                    let pushed = tasks::push_json("pipeline/doubled", &next, options)?;
                    if crate::crash_once(config, "pipeline") {
                        panic!("pipeline: crashed after pushing item {item} on, before completing");
                    }
                    // The result names the task downstream, so the end can be checked.
                    task.complete(&pushed.id.to_string())?;
                }
                None if finished(&mut through)? => return Ok(()),
                None => {}
            }
        },
        "store" => loop {
            match tasks::claim_json::<Item>("pipeline/doubled", lease, idle)? {
                Some((task, Item { item, value })) => {
                    values::put(
                        &format!("pipeline/out/{item}"),
                        &value.to_string(),
                        WriteOptions::new(),
                    )?;
                    task.complete("")?;
                }
                None if finished(&mut through)? => return Ok(()),
                None => {}
            }
        },
        other => Err(format!("pipeline: unknown role `{other}`").into()),
    }
}

/// Whether the pipeline is finished: every item the seed pushed has been
/// through every stage (each stage-one task names its stage-two task).
fn finished(through: &mut crate::Ending) -> wawe_sdk::Result<bool> {
    through.all_with(|id| {
        let raw = tasks::get(id)?;
        let next = raw.result.as_deref().and_then(|r| r.parse().ok());
        Ok(match next {
            Some(next) => raw.state.is_final() && tasks::get(next)?.state.is_final(),
            None => false,
        })
    })
}
