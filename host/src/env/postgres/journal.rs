//! The journal in PostgreSQL: events numbered in commit order (see
//! [`super::writer`]), read after a sequence number, pruned by age.

use super::PgStore;
use crate::env::events::Change;
use crate::env::limits::{i, u};
use crate::env::{EnvResult, Event, EventFilter};

/// Rows read per statement while looking for matching events.
const PAGE: i64 = 1_000;

impl PgStore {
    /// Append one change of `agent` on its own (a refusal to journal).
    pub(crate) async fn record_change(&self, agent: &str, change: Change) -> EnvResult<()> {
        let agent = agent.to_owned();
        self.write(async move |tx| {
            tx.record(&agent, change.clone());
            Ok(())
        })
        .await
    }

    /// Up to `limit` events after `after` matching `filter`, and the last
    /// sequence number looked at.
    pub(crate) async fn read_events(
        &self,
        after: u64,
        filter: &EventFilter,
        limit: u32,
    ) -> EnvResult<(Vec<Event>, u64)> {
        let limit = limit as usize;
        let mut out = Vec::new();
        let mut scanned = after;
        loop {
            let rows = self
                .query(
                    "SELECT seq, at, agent, kind, subject, detail FROM events
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&i(scanned), &PAGE],
                )
                .await?;
            let full = rows.len() as i64 == PAGE;
            for r in rows {
                let event = Event {
                    seq: u(r.get(0)),
                    at: u(r.get(1)),
                    agent: r.get(2),
                    kind: r.get(3),
                    subject: r.get(4),
                    detail: r.get(5),
                };
                scanned = event.seq;
                if filter.matches(&event) {
                    out.push(event);
                    if out.len() >= limit {
                        return Ok((out, scanned));
                    }
                }
            }
            if !full {
                return Ok((out, scanned));
            }
        }
    }

    pub(crate) async fn latest_seq(&self) -> EnvResult<u64> {
        let row = self.query_one("SELECT seq FROM journal_head", &[]).await?;
        Ok(u(row.get(0)))
    }

    pub(crate) async fn prune_events(&self) -> EnvResult<u64> {
        self.write(async move |tx| {
            let cutoff = tx.now.saturating_sub(tx.opts.event_retention_ms);
            let gone = tx
                .query(
                    "WITH gone AS (DELETE FROM events WHERE at < $1 RETURNING 1)
                     SELECT count(*) FROM gone",
                    &[&i(cutoff)],
                )
                .await?;
            Ok(gone.first().map_or(0, |r| u(r.get(0))))
        })
        .await
    }
}
