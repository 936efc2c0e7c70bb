//! The journal, as every backend offers it: reading events, waiting for
//! them (woken by commits, never by polling), and pruning.

use super::events::Change;
use super::{AgentId, Env, EnvResult, Event, EventFilter};

/// The most events one read returns.
pub(crate) const MAX_READ: u32 = 10_000;

impl Env {
    /// Up to `limit` events after sequence number `after` matching `filter`,
    /// oldest first, in commit order.
    pub async fn read_events(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: u32,
    ) -> EnvResult<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min(MAX_READ);
        Ok(store!(self, s => s.read_events(after, filter, limit).await)?.0)
    }

    /// The newest event's sequence number (0 for an empty journal).
    pub async fn latest_seq(&self) -> EnvResult<u64> {
        store!(self, s => s.latest_seq().await)
    }

    /// Wait until an event after `after` matches `filter` or `timeout_ms`
    /// passes; returns the matching events (empty on timeout). Sleeps until a
    /// commit happens, in this process or another; never polls the journal.
    pub async fn wait_events(
        &self,
        after: u64,
        filter: &EventFilter,
        timeout_ms: u64,
    ) -> EnvResult<Vec<Event>> {
        let until = Env::wait_until(timeout_ms);
        let mut rx = self.subscribe();
        let mut after = after;
        loop {
            rx.borrow_and_update();
            let (found, scanned) = store!(self, s => s.read_events(after, filter, MAX_READ).await)?;
            if !found.is_empty() {
                return Ok(found);
            }
            after = scanned;
            if !Env::changed_before(&mut rx, until).await {
                return Ok(Vec::new());
            }
        }
    }

    /// Delete events older than the retention setting; returns how many.
    /// Sequence numbers are never reused.
    pub async fn prune_events(&self) -> EnvResult<u64> {
        store!(self, s => s.prune_events().await)
    }

    /// Journal that `who` was refused something outside the environment
    /// (an HTTP request): `kind` such as `http.denied`, with `subject` and
    /// `detail` saying what and why. Its own operation: the refusal is not
    /// part of a write that could roll it back.
    pub async fn record_denied(
        &self,
        who: &AgentId,
        kind: &'static str,
        subject: String,
        detail: serde_json::Value,
    ) -> EnvResult<()> {
        let change = Change {
            kind,
            subject,
            detail,
        };
        store!(self, s => s.record_change(who.as_str(), change).await)
    }
}
