//! Leader-free election with a lease: whoever holds the exclusive lease on
//! `election/leader` leads; everyone else waits in the lease's FIFO queue.
//! There is no vote and no coordinator: the environment grants the lease to
//! one candidate at a time, in the order they asked.
//!
//! Each candidate (`me` names it) waits for the lease, then serves one term:
//! it announces itself in `election/leader` fenced by the lease's token (a
//! leader whose lease has ended can never overwrite a newer one's), appends
//! its term to `election/terms`, works for `term_ms`, and steps down by
//! releasing the lease, which hands it to the next in line at once.
//!
//! Worst moment: a leader crashes in the middle of its term (`crash =
//! "true"`). The host releases its lease when the run ends; the next
//! candidate is granted it with a higher token and takes over. The crashed
//! candidate, restarted, queues again and serves a later term.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wawe_sdk::reservations::{self, Mode};
use wawe_sdk::values::{self, WriteOptions};
use wawe_sdk::{Config, RunResult, info};

/// One term, as recorded in `election/terms`.
#[derive(Clone, Serialize, Deserialize)]
struct Term {
    leader: String,
    token: u64,
}

pub(crate) fn run(config: &Config) -> RunResult {
    let me = config.require("me")?.to_owned();
    let term_ms: u64 = config.parse("term_ms", 200)?;
    // While the agent runs the host keeps the lease alive; the ttl only
    // matters if this host dies (then the lease lapses and the next takes over).
    let lease = reservations::reserve(
        ["election/leader"],
        Mode::Exclusive,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )?;
    let token = lease.token();
    values::put_json(
        "election/leader",
        &Term {
            leader: me.clone(),
            token,
        },
        WriteOptions::new().fence(token),
    )?;
    values::update("election/terms", |terms: Option<Vec<Term>>| {
        let mut terms = terms.unwrap_or_default();
        terms.push(Term {
            leader: me.clone(),
            token,
        });
        terms
    })?;
    info!("{me} leads with token {token}");
    if crate::crash_once(config, "election") {
        panic!("election: {me} crashed in the middle of its term");
    }
    std::thread::sleep(Duration::from_millis(term_ms));
    lease.release()?;
    Ok(())
}
