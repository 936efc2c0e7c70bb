//! Who runs where: the `hosts` and `agents` tables, agents' ends (their
//! leases released, their tasks put back), and the sweeper.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::{SqliteStore, Tx, reservations, tasks};
use crate::env::limits::{i, u};
use crate::env::{AgentEnd, AgentId, AgentInfo, EnvError, EnvResult, HostInfo, Swept};

/// Reap every host silent past its ttl. Safe when several hosts sweep at
/// once: each reap happens in one transaction that first checks the host is
/// still marked alive, so a second reaper finds nothing left to do.
fn reap_silent_hosts(tx: &mut Tx<'_>) -> EnvResult<u64> {
    let silent: Vec<(String, i64)> = tx
        .conn
        .prepare_cached(
            "SELECT id, last_heartbeat FROM hosts
             WHERE state = 'alive' AND last_heartbeat + ttl_ms < ?1 ORDER BY id",
        )?
        .query_map([i(tx.now)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (host, last) in &silent {
        let why = format!(
            "its host {host} went silent (last heartbeat {} ms before it was reaped)",
            tx.now.saturating_sub(u(*last))
        );
        let agents: Vec<String> = tx
            .conn
            .prepare_cached("SELECT id FROM agents WHERE host = ?1 AND state = 'running'")?
            .query_map([host], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for a in &agents {
            end_agent(tx, a, AgentEnd::Lost, &why)?;
        }
        tx.conn
            .prepare_cached("UPDATE hosts SET state = 'lost' WHERE id = ?1")?
            .execute([host])?;
        tx.journal(
            "env",
            "host.lost",
            &format!("host/{host}"),
            json!({"agents": agents.len(), "last_heartbeat": u(*last)}),
        )?;
    }
    Ok(silent.len() as u64)
}

fn end_agent(tx: &mut Tx<'_>, agent: &str, end: AgentEnd, reason: &str) -> EnvResult<()> {
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE agents SET state = ?1, ended_at = ?2, end_reason = ?3, last_seen = ?2
             WHERE id = ?4 AND state = 'running'",
        )?
        .execute(params![end.as_str(), i(tx.now), reason, agent])?;
    if n == 0 {
        return Ok(());
    }
    let why = format!("agent {agent} {}: {reason}", end.as_str());
    let released = reservations::release_all(tx, agent, &why)?;
    // A lost agent's attempt counts: a task that kills its host must not
    // come back for ever. Only a stop from outside gives the attempt back.
    let failed = end != AgentEnd::Stopped;
    let requeued = tasks::requeue_agent(tx, agent, &why, failed)?;
    tx.journal(
        agent,
        "agent.ended",
        &format!("agent/{agent}"),
        json!({"state": end, "reason": reason, "leases_released": released, "tasks_requeued": requeued}),
    )?;
    Ok(())
}

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentInfo> {
    Ok(AgentInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        replica: r.get(2)?,
        host: r.get(3)?,
        digest: r.get(4)?,
        state: r.get(5)?,
        started_at: u(r.get(6)?),
        last_seen: u(r.get(7)?),
        ended_at: r.get::<_, Option<i64>>(8)?.map(u),
        end_reason: r.get(9)?,
        restarts: r.get(10)?,
    })
}

/// Renew the live leases of a host's (`?2`) running agents at `?1`.
const RENEW_LEASES: &str = "UPDATE leases SET expires_at = ?1 + ttl_ms
     WHERE expires_at > ?1 AND EXISTS (SELECT 1 FROM agents a
         WHERE a.id = leases.agent AND a.host = ?2 AND a.state = 'running')";

/// The shortest ttl among those leases.
const SHORTEST_LEASE: &str = "SELECT min(ttl_ms) FROM leases WHERE expires_at > ?1 AND EXISTS
     (SELECT 1 FROM agents a WHERE a.id = leases.agent AND a.host = ?2 AND a.state = 'running')";

/// Agents as [`agent_row`] reads them. A running agent was last seen at its
/// host's last heartbeat (the keepalive does not write a row per agent).
macro_rules! agents {
    () => {
        "SELECT a.id, a.name, a.replica, a.host, a.digest, a.state, a.started_at,
                CASE WHEN a.state = 'running' THEN max(a.last_seen, coalesce(h.last_heartbeat, 0))
                     ELSE a.last_seen END,
                a.ended_at, a.end_reason, a.restarts
         FROM agents a LEFT JOIN hosts h ON h.id = a.host"
    };
}

impl SqliteStore {
    pub(crate) async fn register_host(
        &self,
        hostname: &str,
        pid: u32,
        ttl_ms: u64,
    ) -> EnvResult<String> {
        let hostname = hostname.to_owned();
        self.write(move |tx| {
            let n: i64 = tx
                .conn
                .prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('hosts', 1)
                     ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
                )?
                .query_row([], |r| r.get(0))?;
            let id = format!("{hostname}-{pid}-{n}");
            tx.conn
                .prepare_cached(
                    "INSERT INTO hosts (id, hostname, pid, started_at, last_heartbeat, ttl_ms, state)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, 'alive')",
                )?
                .execute(params![id, hostname, pid, i(tx.now), i(ttl_ms)])?;
            tx.journal(&id, "host.started", &format!("host/{id}"), json!({"pid": pid}))?;
            Ok(id)
        })
        .await
    }

    pub(crate) async fn keepalive(&self, host: &str) -> EnvResult<Option<u64>> {
        let host = host.to_owned();
        self.write(move |tx| {
            let alive = tx
                .conn
                .prepare_cached(
                    "UPDATE hosts SET last_heartbeat = ?1 WHERE id = ?2 AND state = 'alive'",
                )?
                .execute(params![i(tx.now), host])?;
            if alive == 0 {
                return Err(EnvError::not_found(format!("host {host} is not alive")));
            }
            // Driven from the live leases, not from the host's agents: a
            // keepalive must not cost a row per agent (10,000 agents made it
            // hold the writer for milliseconds four times a second). A running
            // agent's last sighting is its host's heartbeat (see `agents!`).
            tx.conn
                .prepare_cached(RENEW_LEASES)?
                .execute(params![i(tx.now), host])?;
            let shortest: Option<i64> = tx
                .conn
                .prepare_cached(SHORTEST_LEASE)?
                .query_row(params![i(tx.now), host], |r| r.get(0))?;
            Ok(shortest.map(u))
        })
        .await
    }

    pub(crate) async fn agent_gave_up(&self, agent: &str, reason: &str) -> EnvResult<()> {
        let (agent, reason) = (agent.to_owned(), reason.to_owned());
        self.write(move |tx| {
            tx.conn
                .prepare_cached(
                    "UPDATE agents SET state = 'failed',
                         end_reason = coalesce(end_reason || char(10), '') || ?1
                     WHERE id = ?2 AND state != 'running'",
                )?
                .execute(params![reason, agent])?;
            tx.journal(
                &agent,
                "agent.gave-up",
                &format!("agent/{agent}"),
                json!({"reason": reason}),
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn host_stopped(&self, host: &str) -> EnvResult<()> {
        let host = host.to_owned();
        self.write(move |tx| {
            let agents: Vec<String> = tx
                .conn
                .prepare_cached("SELECT id FROM agents WHERE host = ?1 AND state = 'running'")?
                .query_map([&host], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for a in agents {
                end_agent(tx, &a, AgentEnd::Stopped, "its host stopped")?;
            }
            tx.conn
                .prepare_cached(
                    "UPDATE hosts SET state = 'stopped', last_heartbeat = ?1
                     WHERE id = ?2 AND state = 'alive'",
                )?
                .execute(params![i(tx.now), host])?;
            tx.journal(&host, "host.stopped", &format!("host/{host}"), json!({}))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn agent_started(
        &self,
        host: &str,
        name: &str,
        replica: u32,
        digest: &str,
    ) -> EnvResult<AgentId> {
        let (host, name, digest) = (host.to_owned(), name.to_owned(), digest.to_owned());
        self.write(move |tx| {
            let id = format!("{name}.{replica}@{host}");
            let existing: Option<String> = tx
                .conn
                .prepare_cached("SELECT state FROM agents WHERE id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            if existing.as_deref() == Some("running") {
                return Err(EnvError::invalid(format!("agent {id} is already running")));
            }
            tx.conn
                .prepare_cached(
                    "INSERT INTO agents (id, name, replica, host, digest, state, started_at, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?6)
                     ON CONFLICT (id) DO UPDATE SET digest = ?5, state = 'running', started_at = ?6,
                         last_seen = ?6, ended_at = NULL, end_reason = NULL, restarts = restarts + 1",
                )?
                .execute(params![id, name, replica, host, digest, i(tx.now)])?;
            tx.journal(&id, "agent.started", &format!("agent/{id}"), json!({"digest": digest}))?;
            Ok(AgentId::new(id))
        })
        .await
    }

    pub(crate) async fn agent_ended(
        &self,
        agent: &str,
        end: AgentEnd,
        reason: &str,
    ) -> EnvResult<()> {
        let (agent, reason) = (agent.to_owned(), reason.to_owned());
        self.write(move |tx| end_agent(tx, &agent, end, &reason))
            .await
    }

    /// Reap silent hosts, expire leases and put lapsed claims back, in one
    /// transaction.
    pub(crate) async fn sweep(&self) -> EnvResult<Swept> {
        self.write(|tx| {
            Ok(Swept {
                hosts_reaped: reap_silent_hosts(tx)?,
                leases_expired: reservations::expire(tx)?,
                claims_lapsed: tasks::requeue_expired(tx, None)?,
                events_pruned: 0,
            })
        })
        .await
    }

    pub(crate) async fn list_agents(&self) -> EnvResult<Vec<AgentInfo>> {
        self.read(move |conn, _| {
            Ok(conn
                .prepare_cached(concat!(agents!(), " ORDER BY a.started_at DESC, a.id"))?
                .query_map([], agent_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(crate) async fn agents_page(
        &self,
        state: Option<&str>,
        after: &str,
        limit: u32,
    ) -> EnvResult<Vec<AgentInfo>> {
        let (state, after) = (state.map(str::to_owned), after.to_owned());
        self.read(move |conn, _| {
            Ok(conn
                .prepare_cached(concat!(
                    agents!(),
                    " WHERE a.id > ?1 AND (?2 IS NULL OR a.state = ?2) ORDER BY a.id LIMIT ?3"
                ))?
                .query_map(params![after, state, limit], agent_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(crate) async fn get_agent(&self, id: &str) -> EnvResult<Option<AgentInfo>> {
        let id = id.to_owned();
        self.read(move |conn, _| {
            Ok(conn
                .prepare_cached(concat!(agents!(), " WHERE a.id = ?1"))?
                .query_row([id], agent_row)
                .optional()?)
        })
        .await
    }

    pub(crate) async fn list_hosts(&self) -> EnvResult<Vec<HostInfo>> {
        self.read(move |conn, _| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, hostname, pid, started_at, last_heartbeat, ttl_ms, state
                     FROM hosts ORDER BY started_at DESC, id",
                )?
                .query_map([], |r| {
                    Ok(HostInfo {
                        id: r.get(0)?,
                        hostname: r.get(1)?,
                        pid: r.get(2)?,
                        started_at: u(r.get(3)?),
                        last_heartbeat: u(r.get(4)?),
                        ttl_ms: u(r.get(5)?),
                        state: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::sqlite::tests::assert_no_scan_or_sort;

    #[test]
    fn a_keepalive_reads_live_leases_by_expiry_not_every_agent() {
        assert_no_scan_or_sort(&[RENEW_LEASES, SHORTEST_LEASE]);
    }
}
