//! Counts per table and state in PostgreSQL, each read as one statement (one
//! snapshot).

use super::PgStore;
use super::tasks::READ_NOW;
use crate::env::inspect::group_queues;
use crate::env::limits::u;
use crate::env::{EnvResult, Overview, Stats, TaskState, WorkCounts};

impl PgStore {
    pub(crate) async fn work_counts(&self) -> EnvResult<WorkCounts> {
        let sql = format!(
            "SELECT (SELECT coalesce(json_object_agg(state, n), '{{}}')::text
                     FROM (SELECT state, count(*) AS n FROM tasks GROUP BY state) s),
                    (SELECT count(*) FROM leases WHERE expires_at > {READ_NOW})"
        );
        let row = self.query_one(&sql, &[&self.injected_now()]).await?;
        Ok(WorkCounts {
            tasks: per_state(row.get(0)),
            leases: u(row.get(1)),
        })
    }

    pub(crate) async fn reservations_queued(&self) -> EnvResult<u64> {
        let row = self
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                 FROM reservation_waiters_id_seq",
                &[],
            )
            .await?;
        Ok(u(row.get(0)))
    }

    pub(crate) async fn stats(&self) -> EnvResult<Stats> {
        let sql = format!(
            "SELECT (SELECT coalesce(json_object_agg(state, n), '{{}}')::text
                     FROM (SELECT state, count(*) AS n FROM tasks GROUP BY state) s),
                    (SELECT count(*) FROM leases WHERE expires_at > {READ_NOW}),
                    (SELECT coalesce(json_agg(json_build_array(state, n) ORDER BY state), '[]')::text
                     FROM (SELECT state, count(*) AS n FROM agents GROUP BY state) a),
                    (SELECT count(*) FROM hosts),
                    (SELECT count(*) FROM learnings),
                    (SELECT count(*) FROM signals),
                    (SELECT count(*) FROM kv WHERE NOT deleted),
                    (SELECT count(*) FROM events),
                    (SELECT seq FROM journal_head)"
        );
        let row = self.query_one(&sql, &[&self.injected_now()]).await?;
        let agents: Vec<(String, u64)> = serde_json::from_str(row.get(2)).unwrap_or_default();
        Ok(Stats {
            tasks: per_state(row.get(0)),
            leases: u(row.get(1)),
            agents,
            hosts: u(row.get(3)),
            learnings: u(row.get(4)),
            signals: u(row.get(5)),
            values: u(row.get(6)),
            events: u(row.get(7)),
            last_seq: u(row.get(8)),
        })
    }
}

impl PgStore {
    pub(crate) async fn overview(&self) -> EnvResult<Overview> {
        let sql = format!(
            "SELECT (SELECT coalesce(json_agg(json_build_array(state, queue, n) ORDER BY queue, state), '[]')::text
                     FROM (SELECT state, queue, count(*) AS n FROM tasks GROUP BY state, queue) q),
                    (SELECT coalesce(json_agg(json_build_array(state, n) ORDER BY state), '[]')::text
                     FROM (SELECT state, count(*) AS n FROM agents GROUP BY state) a),
                    (SELECT count(*) FROM leases WHERE expires_at > {READ_NOW}),
                    (SELECT count(*) FROM reservation_waiters WHERE deadline > {READ_NOW}),
                    (SELECT count(*) FROM learnings),
                    (SELECT count(*) FROM signals),
                    (SELECT count(*) FROM kv WHERE NOT deleted),
                    (SELECT coalesce((SELECT max(seq) FROM events) - (SELECT min(seq) FROM events) + 1, 0)),
                    (SELECT seq FROM journal_head)"
        );
        let row = self.query_one(&sql, &[&self.injected_now()]).await?;
        let queues: Vec<(String, String, u64)> =
            serde_json::from_str(row.get(0)).unwrap_or_default();
        Ok(Overview {
            queues: group_queues(queues),
            agents: serde_json::from_str(row.get(1)).unwrap_or_default(),
            leases: u(row.get(2)),
            waiters: u(row.get(3)),
            learnings: u(row.get(4)),
            signals: u(row.get(5)),
            values: u(row.get(6)),
            events: u(row.get(7)),
            last_seq: u(row.get(8)),
        })
    }
}

/// Every task state with its count (zeros included), from `{"state": n}`.
fn per_state(json: &str) -> Vec<(String, u64)> {
    let counts: std::collections::HashMap<String, u64> =
        serde_json::from_str(json).unwrap_or_default();
    TaskState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                counts.get(s.as_str()).copied().unwrap_or(0),
            )
        })
        .collect()
}
