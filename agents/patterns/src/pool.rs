//! A worker pool: one queue, any number of interchangeable workers.
//!
//! The seed pushes `jobs` jobs, each with a dedupe key so a restarted seed
//! pushes nothing twice, and records their ids. Workers claim a job, do it,
//! write the result under the job's own key and complete the job.
//!
//! Worst moment: a worker crashes after writing the result and before
//! completing (`crash = "true"`). The host releases its claim; the job goes
//! back to the queue and another worker does it again. Delivery is
//! at-least-once, so the effect is made idempotent: the result is keyed by
//! the job, and writing it twice writes the same thing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::tasks::{self, PushOptions};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Config, RunResult, info};

const QUEUE: &str = "pool/jobs";

#[derive(Serialize, Deserialize)]
struct Job {
    n: u64,
}

pub(crate) fn run(config: &Config) -> RunResult {
    let jobs: u64 = config.parse("jobs", 20)?;
    match config.get_or("role", "worker") {
        "seed" => {
            let mut ids = Vec::new();
            for n in 1..=jobs {
                let options = PushOptions::new().dedupe_key(format!("job/{n}"));
                ids.push(tasks::push_json(QUEUE, &Job { n }, options)?.id);
            }
            values::put_json("pool/ids", &ids, WriteOptions::new())?;
            info!("pushed {jobs} jobs");
            Ok(())
        }
        "worker" => {
            let mut jobs = crate::Ending::new("pool/ids");
            loop {
                match tasks::claim_json::<Job>(
                    QUEUE,
                    Duration::from_secs(30),
                    Duration::from_millis(300),
                )? {
                    Some((task, Job { n })) => {
                        let result = n * n;
                        values::put(
                            &format!("pool/result/{n}"),
                            &result.to_string(),
                            WriteOptions::new(),
                        )?;
                        if crate::crash_once(config, "pool") {
                            panic!("pool: crashed after the work, before completing job {n}");
                        }
                        task.complete(&result.to_string())?;
                    }
                    // Done once the seed has pushed and every job has ended.
                    None if jobs.all()? => return Ok(()),
                    None => {}
                }
            }
        }
        other => Err(format!("pool: unknown role `{other}`").into()),
    }
}
