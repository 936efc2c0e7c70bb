//! The journal in PostgreSQL: events numbered in commit order (see
//! [`super::writer`]), read after a sequence number, pruned by age.

use super::PgStore;
use crate::env::events::Change;
use crate::env::limits::{i, u};
use crate::env::{Direction, EnvResult, Event, EventFilter, EventPage, Story};

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

    /// Up to `limit` events matching `filter` from `cursor` in `direction`,
    /// looking at no more than `max_scan` of them, a page of rows at a time.
    pub(crate) async fn scan_events(
        &self,
        cursor: u64,
        direction: Direction,
        filter: &EventFilter,
        limit: u32,
        max_scan: u64,
    ) -> EnvResult<EventPage> {
        let sql = match direction {
            Direction::Forward => {
                "SELECT seq, at, agent, kind, subject, detail FROM events
                 WHERE seq > $1 ORDER BY seq LIMIT $2"
            }
            Direction::Back => {
                "SELECT seq, at, agent, kind, subject, detail FROM events
                 WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
            }
        };
        let mut page = EventPage {
            scanned_to: cursor,
            ..EventPage::default()
        };
        let mut scanned = 0u64;
        loop {
            let rows = self.query(sql, &[&i(page.scanned_to), &PAGE]).await?;
            let full = rows.len() as i64 == PAGE;
            for r in &rows {
                if page.events.len() >= limit as usize || scanned >= max_scan {
                    page.more = true;
                    return Ok(page);
                }
                let event = event_row(r);
                scanned += 1;
                page.scanned_to = event.seq;
                if filter.matches(&event) {
                    page.events.push(event);
                }
            }
            if !full {
                return Ok(page);
            }
        }
    }

    /// The oldest `limit` events whose subject is `subject` among those
    /// written from `from` to `to` (ms), looking at no more than `max_scan`.
    pub(crate) async fn events_about(
        &self,
        subject: &str,
        from: u64,
        to: u64,
        limit: u32,
        max_scan: u64,
    ) -> EnvResult<Story> {
        let scan = i(max_scan);
        let rows = self
            .query(
                "SELECT seq, at, agent, kind, subject, detail FROM
                   (SELECT * FROM events WHERE at >= $1 AND at <= $2 ORDER BY at, seq LIMIT $3) w
                 WHERE subject = $4 ORDER BY seq LIMIT $5",
                &[&i(from), &i(to), &scan, &subject, &(i64::from(limit) + 1)],
            )
            .await?;
        let window = self
            .query(
                "SELECT count(*) FROM
                   (SELECT 1 FROM events WHERE at >= $1 AND at <= $2 LIMIT $3) w",
                &[&i(from), &i(to), &(scan + 1)],
            )
            .await?;
        let seen: i64 = window.first().map_or(0, |r| r.get(0));
        let mut events: Vec<Event> = rows.iter().map(event_row).collect();
        let cut_short = seen > scan || events.len() > limit as usize;
        events.truncate(limit as usize);
        Ok(Story { events, cut_short })
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

fn event_row(r: &tokio_postgres::Row) -> Event {
    Event {
        seq: u(r.get(0)),
        at: u(r.get(1)),
        agent: r.get(2),
        kind: r.get(3),
        subject: r.get(4),
        detail: r.get(5),
    }
}
