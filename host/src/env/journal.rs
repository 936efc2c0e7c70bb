//! The journal, as every backend offers it: reading events, waiting for
//! them (woken by commits, never by polling), and pruning.

use super::events::Change;
use super::wake::Interest;
use tokio::time::Instant;

use super::{
    AgentId, Direction, Env, EnvResult, Event, EventFilter, EventPage, MAX_EVENTS_SCANNED,
};

/// The most events one read returns.
pub(crate) const MAX_READ: u32 = 10_000;

impl Env {
    /// Up to `limit` events after sequence number `after` matching `filter`,
    /// oldest first, in commit order, looking at no more than
    /// [`MAX_EVENTS_SCANNED`] events: the page says where it got to, so a
    /// narrow filter over a long journal costs many short reads, never one
    /// long one.
    pub async fn read_events_page(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: u32,
    ) -> EnvResult<EventPage> {
        if limit == 0 {
            return Ok(EventPage {
                scanned_to: after,
                more: true,
                ..EventPage::default()
            });
        }
        let limit = limit.min(MAX_READ);
        store!(self, s => s.scan_events(after, Direction::Forward, filter, limit, MAX_EVENTS_SCANNED).await)
    }

    /// Up to `limit` events after sequence number `after` matching `filter`,
    /// oldest first, in commit order: [`Env::read_events_page`] read on to
    /// the journal's end (for tools; agents read a page at a time).
    pub async fn read_events(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: u32,
    ) -> EnvResult<Vec<Event>> {
        let limit = limit.min(MAX_READ) as usize;
        let mut found = Vec::new();
        let mut after = after;
        while found.len() < limit {
            let page = self
                .read_events_page(after, filter, (limit - found.len()) as u32)
                .await?;
            found.extend(page.events);
            if !page.more {
                break;
            }
            after = page.scanned_to;
        }
        Ok(found)
    }

    /// The newest event's sequence number (0 for an empty journal).
    pub async fn latest_seq(&self) -> EnvResult<u64> {
        store!(self, s => s.latest_seq().await)
    }

    /// Wait until an event after `after` matches `filter` or `timeout_ms`
    /// passes; returns the matching events (empty on timeout). Sleeps until a
    /// commit happens, in this process or another; never polls the journal.
    /// A long stretch of journal to look through is read a bounded page at a
    /// time.
    pub async fn wait_events(
        &self,
        after: u64,
        filter: &EventFilter,
        timeout_ms: u64,
    ) -> EnvResult<Vec<Event>> {
        let until = Env::wait_until(timeout_ms);
        let waiter = self.wakes().register(Interest::Events(filter.clone()));
        let mut after = after;
        loop {
            waiter.settle();
            let page = self.read_events_page(after, filter, MAX_READ).await?;
            if !page.events.is_empty() {
                return Ok(page.events);
            }
            after = page.scanned_to;
            if page.more {
                if Instant::now() >= until {
                    return Ok(Vec::new());
                }
                continue;
            }
            if !waiter.woken_before(until).await {
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
