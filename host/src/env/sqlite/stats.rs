//! Counts per table and state, for `wawe env stats` and progress displays.

use rusqlite::{Connection, OptionalExtension};

use super::SqliteStore;
use crate::env::inspect::group_queues;
use crate::env::limits::{i, u};
use crate::env::{EnvResult, Overview, Stats, TaskState, WorkCounts};

/// Tasks per state and live leases: cheap (index counts), unlike counting
/// the journal, so a progress display can ask often.
fn work_counts(conn: &Connection, now: u64) -> EnvResult<WorkCounts> {
    let mut tasks = Vec::new();
    for state in TaskState::ALL {
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM tasks WHERE state = ?1")?
            .query_row([state.as_str()], |r| r.get(0))?;
        tasks.push((state.as_str().to_owned(), u(n)));
    }
    let leases: i64 = conn
        .prepare_cached("SELECT count(*) FROM leases WHERE expires_at > ?1")?
        .query_row([i(now)], |r| r.get(0))?;
    Ok(WorkCounts {
        tasks,
        leases: u(leases),
    })
}

impl SqliteStore {
    pub(crate) async fn work_counts(&self) -> EnvResult<WorkCounts> {
        self.read(work_counts).await
    }

    /// Each queued request got a waiter id.
    pub(crate) async fn reservations_queued(&self) -> EnvResult<u64> {
        self.read(move |conn, _| {
            let n: Option<i64> = conn
                .prepare_cached(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'reservation_waiters'",
                )?
                .query_row([], |r| r.get(0))
                .optional()?;
            Ok(n.map_or(0, u))
        })
        .await
    }

    pub(crate) async fn stats(&self) -> EnvResult<Stats> {
        self.read(move |conn, now| {
            let count = |sql: &str| -> EnvResult<u64> {
                Ok(u(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?))
            };
            let WorkCounts { tasks, leases } = work_counts(conn, now)?;
            let agents = conn
                .prepare_cached("SELECT state, count(*) FROM agents GROUP BY state ORDER BY state")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Stats {
                tasks,
                leases,
                agents,
                hosts: count("SELECT count(*) FROM hosts")?,
                learnings: count("SELECT count(*) FROM learnings")?,
                signals: count("SELECT count(*) FROM signals")?,
                values: count("SELECT count(*) FROM kv WHERE deleted = 0")?,
                events: count("SELECT count(*) FROM events")?,
                last_seq: count(super::journal::LATEST_SEQ)?,
            })
        })
        .await
    }

    pub(crate) async fn overview(&self) -> EnvResult<Overview> {
        self.read(move |conn, now| {
            let count = |sql: &str| -> EnvResult<u64> {
                Ok(u(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?))
            };
            // In index order (state, queue): no sort, no table rows.
            let mut rows = conn
                .prepare_cached("SELECT state, queue, count(*) FROM tasks GROUP BY state, queue")?
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, u(r.get(2)?)))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by(|a, b| a.1.cmp(&b.1));
            let queues = group_queues(rows);
            let agents = conn
                .prepare_cached("SELECT state, count(*) FROM agents GROUP BY state ORDER BY state")?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, u(r.get(1)?))))?
                .collect::<Result<Vec<_>, _>>()?;
            let live = |sql: &str| -> EnvResult<u64> {
                Ok(u(conn
                    .prepare_cached(sql)?
                    .query_row([i(now)], |r| r.get(0))?))
            };
            Ok(Overview {
                queues,
                agents,
                leases: live("SELECT count(*) FROM leases WHERE expires_at > ?1")?,
                waiters: live("SELECT count(*) FROM reservation_waiters WHERE deadline > ?1")?,
                learnings: count("SELECT count(*) FROM learnings")?,
                signals: count("SELECT count(*) FROM signals")?,
                values: count("SELECT count(*) FROM kv WHERE deleted = 0")?,
                events: count("SELECT coalesce((SELECT max(seq) FROM events) - (SELECT min(seq) FROM events) + 1, 0)")?,
                last_seq: count(super::journal::LATEST_SEQ)?,
            })
        }).await
    }
}
