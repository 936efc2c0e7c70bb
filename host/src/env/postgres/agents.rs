//! Hosts and agents in PostgreSQL: registration, heartbeats with keepalive,
//! agents' ends (leases released, tasks put back) and reaping silent hosts.
//! Two hosts reaping the same silent host at once: the row lock on it lets
//! the first reap and the second find it no longer alive.

use serde_json::json;
use tokio_postgres::Row;

use super::{PgStore, PgTx, reservations, tasks};
use crate::env::limits::{i, u};
use crate::env::{AgentEnd, AgentId, AgentInfo, EnvError, EnvResult, HostInfo, Swept};

async fn reap_silent_hosts(tx: &mut PgTx<'_>) -> EnvResult<u64> {
    let silent = tx
        .query(
            "SELECT id, last_heartbeat FROM hosts
             WHERE state = 'alive' AND last_heartbeat + ttl_ms < $1 ORDER BY id
             FOR UPDATE SKIP LOCKED",
            &[&i(tx.now)],
        )
        .await?;
    for r in &silent {
        let (host, last): (String, i64) = (r.get(0), r.get(1));
        let why = format!(
            "its host {host} went silent (last heartbeat {} ms before it was reaped)",
            tx.now.saturating_sub(u(last))
        );
        let agents = running_agents(tx, &host).await?;
        for a in &agents {
            end_agent(tx, a, AgentEnd::Lost, &why).await?;
        }
        tx.query("UPDATE hosts SET state = 'lost' WHERE id = $1", &[&host])
            .await?;
        tx.journal(
            "env",
            "host.lost",
            &format!("host/{host}"),
            json!({"agents": agents.len(), "last_heartbeat": u(last)}),
        );
    }
    Ok(silent.len() as u64)
}

/// The agents `host` runs, by id.
async fn running_agents(tx: &mut PgTx<'_>, host: &str) -> EnvResult<Vec<String>> {
    let rows = tx
        .query(
            "SELECT id FROM agents WHERE host = $1 AND state = 'running' ORDER BY id",
            &[&host],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn end_agent(tx: &mut PgTx<'_>, agent: &str, end: AgentEnd, reason: &str) -> EnvResult<()> {
    let ended = tx
        .query(
            "UPDATE agents SET state = $1, ended_at = $2, end_reason = $3, last_seen = $2
             WHERE id = $4 AND state = 'running' RETURNING id",
            &[&end.as_str(), &i(tx.now), &reason, &agent],
        )
        .await?;
    if ended.is_empty() {
        return Ok(());
    }
    let why = format!("agent {agent} {}: {reason}", end.as_str());
    let released = reservations::release_all(tx, agent, &why).await?;
    // A lost agent's attempt counts: a task that kills its host must not
    // come back for ever. Only a stop from outside gives the attempt back.
    let failed = end != AgentEnd::Stopped;
    let requeued = tasks::requeue_agent(tx, agent, &why, failed).await?;
    tx.journal(
        agent,
        "agent.ended",
        &format!("agent/{agent}"),
        json!({"state": end, "reason": reason, "leases_released": released, "tasks_requeued": requeued}),
    );
    Ok(())
}

fn agent_row(r: &Row) -> AgentInfo {
    AgentInfo {
        id: r.get(0),
        name: r.get(1),
        replica: u(r.get(2)) as u32,
        host: r.get(3),
        digest: r.get(4),
        state: r.get(5),
        started_at: u(r.get(6)),
        last_seen: u(r.get(7)),
        ended_at: r.get::<_, Option<i64>>(8).map(u),
        end_reason: r.get(9),
        restarts: u(r.get(10)) as u32,
    }
}

/// Agents as [`agent_row`] reads them. A running agent was last seen at its
/// host's last heartbeat (the keepalive does not write a row per agent).
macro_rules! agents {
    () => {
        "SELECT a.id, a.name, a.replica, a.host, a.digest, a.state, a.started_at,
                CASE WHEN a.state = 'running' THEN greatest(a.last_seen, h.last_heartbeat)
                     ELSE a.last_seen END,
                a.ended_at, a.end_reason, a.restarts
         FROM agents a LEFT JOIN hosts h ON h.id = a.host"
    };
}

impl PgStore {
    pub(crate) async fn register_host(
        &self,
        hostname: &str,
        pid: u32,
        ttl_ms: u64,
    ) -> EnvResult<String> {
        let hostname = hostname.to_owned();
        self.write(async move |tx| {
            let n: i64 = tx
                .query_one("SELECT nextval('host_numbers')", &[])
                .await?
                .get(0);
            let id = format!("{hostname}-{pid}-{n}");
            tx.query(
                "INSERT INTO hosts (id, hostname, pid, started_at, last_heartbeat, ttl_ms, state)
                 VALUES ($1, $2, $3, $4, $4, $5, 'alive')",
                &[&id, &hostname, &(pid as i64), &i(tx.now), &i(ttl_ms)],
            )
            .await?;
            tx.journal(
                &id,
                "host.started",
                &format!("host/{id}"),
                json!({"pid": pid}),
            );
            Ok(id)
        })
        .await
    }

    pub(crate) async fn keepalive(&self, host: &str) -> EnvResult<Option<u64>> {
        let host = host.to_owned();
        self.write(async move |tx| {
            let alive = tx
                .query(
                    "UPDATE hosts SET last_heartbeat = $1 WHERE id = $2 AND state = 'alive'
                     RETURNING id",
                    &[&i(tx.now), &host],
                )
                .await?;
            if alive.is_empty() {
                return Err(EnvError::not_found(format!("host {host} is not alive")));
            }
            // Driven from the live leases, not from the host's agents: a
            // keepalive must not cost a row per agent. A running agent's last
            // sighting is its host's heartbeat (see `agents!`).
            let row = tx
                .query_one(
                    "WITH l AS (UPDATE leases SET expires_at = $1 + ttl_ms
                                WHERE expires_at > $1 AND EXISTS (SELECT 1 FROM agents a
                                    WHERE a.id = leases.agent AND a.host = $2
                                      AND a.state = 'running')
                                RETURNING ttl_ms)
                     SELECT min(ttl_ms) FROM l",
                    &[&i(tx.now), &host],
                )
                .await?;
            Ok(row.get::<_, Option<i64>>(0).map(u))
        })
        .await
    }

    pub(crate) async fn agent_gave_up(&self, agent: &str, reason: &str) -> EnvResult<()> {
        let (agent, reason) = (agent.to_owned(), reason.to_owned());
        self.write(async move |tx| {
            tx.query(
                "UPDATE agents SET state = 'failed',
                     end_reason = coalesce(end_reason || chr(10), '') || $1
                 WHERE id = $2 AND state <> 'running'",
                &[&reason, &agent],
            )
            .await?;
            tx.journal(
                &agent,
                "agent.gave-up",
                &format!("agent/{agent}"),
                json!({"reason": reason}),
            );
            Ok(())
        })
        .await
    }

    pub(crate) async fn host_stopped(&self, host: &str) -> EnvResult<()> {
        let host = host.to_owned();
        self.write(async move |tx| {
            for a in &running_agents(tx, &host).await? {
                end_agent(tx, a, AgentEnd::Stopped, "its host stopped").await?;
            }
            tx.query(
                "UPDATE hosts SET state = 'stopped', last_heartbeat = $1
                 WHERE id = $2 AND state = 'alive'",
                &[&i(tx.now), &host],
            )
            .await?;
            tx.journal(&host, "host.stopped", &format!("host/{host}"), json!({}));
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
        self.write(async move |tx| {
            let id = format!("{name}.{replica}@{host}");
            let existing = tx
                .query_opt("SELECT state FROM agents WHERE id = $1 FOR UPDATE", &[&id])
                .await?;
            if existing.is_some_and(|r| r.get::<_, &str>(0) == "running") {
                return Err(EnvError::invalid(format!("agent {id} is already running")));
            }
            tx.query(
                "INSERT INTO agents AS a (id, name, replica, host, digest, state, started_at, last_seen)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6, $6)
                 ON CONFLICT (id) DO UPDATE SET digest = $5, state = 'running', started_at = $6,
                     last_seen = $6, ended_at = NULL, end_reason = NULL, restarts = a.restarts + 1",
                &[&id, &name, &(replica as i64), &host, &digest, &i(tx.now)],
            )
            .await?;
            tx.journal(&id, "agent.started", &format!("agent/{id}"), json!({"digest": digest}));
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
        self.write(async move |tx| end_agent(tx, &agent, end, &reason).await)
            .await
    }

    /// Reap silent hosts, expire leases and put lapsed claims back, in one
    /// transaction.
    pub(crate) async fn sweep(&self) -> EnvResult<Swept> {
        self.write(async move |tx| {
            Ok(Swept {
                hosts_reaped: reap_silent_hosts(tx).await?,
                leases_expired: reservations::expire(tx).await?,
                claims_lapsed: tasks::requeue_expired(tx, None).await?,
                events_pruned: 0,
            })
        })
        .await
    }

    pub(crate) async fn list_agents(&self) -> EnvResult<Vec<AgentInfo>> {
        let rows = self
            .query(concat!(agents!(), " ORDER BY a.started_at DESC, a.id"), &[])
            .await?;
        Ok(rows.iter().map(agent_row).collect())
    }

    pub(crate) async fn agents_page(
        &self,
        state: Option<&str>,
        after: &str,
        limit: u32,
    ) -> EnvResult<Vec<AgentInfo>> {
        let rows = self
            .query(
                concat!(
                    agents!(),
                    " WHERE a.id > $1 AND ($2::text IS NULL OR a.state = $2) ORDER BY a.id LIMIT $3"
                ),
                &[&after, &state, &(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(agent_row).collect())
    }

    pub(crate) async fn get_agent(&self, id: &str) -> EnvResult<Option<AgentInfo>> {
        let rows = self
            .query(concat!(agents!(), " WHERE a.id = $1"), &[&id])
            .await?;
        Ok(rows.first().map(agent_row))
    }

    pub(crate) async fn list_hosts(&self) -> EnvResult<Vec<HostInfo>> {
        let rows = self
            .query(
                "SELECT id, hostname, pid, started_at, last_heartbeat, ttl_ms, state
                 FROM hosts ORDER BY started_at DESC, id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HostInfo {
                id: r.get(0),
                hostname: r.get(1),
                pid: u(r.get(2)) as u32,
                started_at: u(r.get(3)),
                last_heartbeat: u(r.get(4)),
                ttl_ms: u(r.get(5)),
                state: r.get(6),
            })
            .collect())
    }
}
