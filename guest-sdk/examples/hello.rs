// A complete agent: claim `{"name": …}` tasks from a queue, write a greeting
// as a shared value fenced by a lease on the name, complete the task.
// (The SDK's documented example; in the repository, `agents/hello` builds
// it and the tests run it.)
// Config: `queue` (default "greetings"), `idle_ms` (default 1000): how long to
// wait for a task before returning.
use std::time::Duration;

use serde::Deserialize;
use wawe_sdk::reservations::{self, Mode};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Agent, Config, RunResult, info, tasks};

/// The payload of a greeting task.
#[derive(Deserialize)]
struct Greet {
    name: String,
}

/// The agent; `run` is all it has.
struct Hello;

impl Agent for Hello {
    fn run(config: Config) -> RunResult {
        let queue = config.get_or("queue", "greetings");
        let idle = Duration::from_millis(config.parse("idle_ms", 1000)?);
        let lease = Duration::from_secs(10);

        // `?` works for any error: it ends the run failed, with the error as the reason.
        while let Some((task, greet)) = tasks::claim_json::<Greet>(queue, lease, idle)? {
            // One writer per name at a time, waiting up to 5 s for it.
            let name = format!("names/{}", greet.name);
            let guard =
                reservations::reserve([name], Mode::Exclusive, lease, Duration::from_secs(5))?;

            // The lease's fencing token guards the write against a writer whose lease lapsed.
            let text = format!("hello, {}", greet.name);
            let key = format!("greetings/{}", greet.name);
            values::put(&key, &text, WriteOptions::new().fence(guard.token()))?;

            info!(
                "greeted {} (task {}, attempt {})",
                greet.name,
                task.id(),
                task.attempt()
            );
            task.complete(&text)?;
            // Dropping `guard` would release the lease too; this reports the outcome.
            guard.release()?;
        }
        Ok(())
    }
}

wawe_sdk::agent!(Hello);
