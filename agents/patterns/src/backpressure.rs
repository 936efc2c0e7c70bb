//! Backpressure with signals: consumers grant credit on a decaying signal
//! trail and the producer pushes only while there is credit, so it never
//! runs further ahead of the consumers than they asked for.
//!
//! Each `consumer` deposits `window` credits on `credit/backpressure` when
//! it starts, and one more each time it finishes an item. The `producer`
//! spends one credit per push (a negative deposit) and, out of credit,
//! waits for the next deposit in the journal (no polling). Credit decays
//! with a half-life of `half_life_ms`, so credit granted by a consumer that
//! is gone fades instead of feeding a queue nobody drains. The producer
//! records the most items it ever had outstanding (pushed, not yet done) in
//! `backpressure/max-outstanding`: at most `window` per consumer start.
//!
//! Worst moment: a consumer crashes holding an item (`crash = "true"`). The
//! item goes back to the queue for another consumer; the crashed one's
//! credit decays, and its restart grants a fresh window.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::events::{self, Filter};
use wawe_sdk::signals;
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Config, RunResult};

const QUEUE: &str = "backpressure/items";
const CREDIT: &str = "credit/backpressure";

#[derive(Serialize, Deserialize)]
struct Item {
    n: u64,
}

pub(crate) fn run(config: &Config) -> RunResult {
    let items: u64 = config.parse("items", 40)?;
    let window: f64 = config.parse("window", 2.0)?;
    let half_life = Duration::from_millis(config.parse("half_life_ms", 5_000)?);
    match config.get_or("role", "consumer") {
        "producer" => produce(items, half_life),
        "consumer" => consume(config, window, half_life),
        other => Err(format!("backpressure: unknown role `{other}`").into()),
    }
}

fn produce(items: u64, half_life: Duration) -> RunResult {
    let mut ids = Vec::new();
    let mut outstanding = BTreeSet::new();
    let mut most = 0;
    let mut waits = 0u64;
    let credit = Filter::kind("signal.deposited").and_subject(format!("signal/{CREDIT}"));
    // Items leave `outstanding` as the journal reports them ended.
    let ended = Filter::kinds(["task.completed", "task.dead"]);
    let mut read_up_to = events::latest()?;
    for n in 1..=items {
        // Spend a credit, or wait for consumers to grant one.
        loop {
            let seen = events::latest()?;
            if signals::sense(CREDIT)? >= 1.0 {
                signals::deposit_with_half_life(CREDIT, -1.0, half_life)?;
                break;
            }
            waits += 1;
            events::wait(seen, &credit, Duration::from_secs(5))?;
        }
        let options = PushOptions::new().dedupe_key(format!("item/{n}"));
        let id = tasks::push_json(QUEUE, &Item { n }, options)?.id;
        ids.push(id);
        outstanding.insert(id);
        loop {
            let batch = events::read(read_up_to, &ended, 1_000)?;
            let Some(last) = batch.last() else { break };
            read_up_to = last.seq;
            for event in &batch {
                if let Some(id) = event
                    .subject
                    .strip_prefix("task/")
                    .and_then(|id| id.parse().ok())
                {
                    outstanding.remove(&id);
                }
            }
        }
        most = most.max(outstanding.len());
    }
    values::put_json(
        "backpressure/max-outstanding",
        &serde_json::json!({ "items": most, "waits_for_credit": waits }),
        WriteOptions::new(),
    )?;
    values::put_json("backpressure/ids", &ids, WriteOptions::new())?;
    Ok(())
}

fn consume(config: &Config, window: f64, half_life: Duration) -> RunResult {
    signals::deposit_with_half_life(CREDIT, window, half_life)?;
    let mut items = crate::Ending::new("backpressure/ids");
    loop {
        match tasks::claim_json::<Item>(QUEUE, Duration::from_secs(30), Duration::from_millis(300))?
        {
            Some((task, Item { n })) => {
                if crate::crash_once(config, "backpressure") {
                    panic!("backpressure: crashed holding item {n}");
                }
                // The work: slower than the producer, which is the point.
                std::thread::sleep(Duration::from_millis(20));
                task.complete("")?;
                signals::deposit_with_half_life(CREDIT, 1.0, half_life)?;
            }
            // Done once the producer has pushed everything and every item has ended.
            None if items.all()? => return Ok(()),
            None => {}
        }
    }
}
