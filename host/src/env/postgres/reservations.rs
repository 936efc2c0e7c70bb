//! Reservations in PostgreSQL. The overlap check is a read of other rows, so
//! two hosts could both pass it (write skew): every reservation attempt holds
//! a transaction-scoped advisory lock on each first path segment it names
//! (overlapping paths share theirs), taken at the start of its batch.

use serde_json::json;

use super::tasks::READ_NOW;
use super::writer::lock_key;
use super::{PgStore, PgTx};
use crate::env::limits::{i, u};
use crate::env::reservations::{
    FirstConflict, conflicts, first_segments, lookups, waiter_goes_first,
};
use crate::env::resource::overlaps;
use crate::env::store::Attempt;
use crate::env::{EnvError, EnvResult, Holding, Lease, Mode, Waiter};

/// The first live lease of someone else that conflicts with `resources` in
/// `mode`, and the earliest expiry among all conflicting leases.
async fn lease_conflict(
    tx: &mut PgTx<'_>,
    agent: &str,
    resources: &[String],
    mode: Mode,
) -> EnvResult<Option<(EnvError, u64)>> {
    let now = i(tx.now);
    let mut found = FirstConflict::default();
    for wanted in resources {
        let (names, under) = lookups(wanted);
        let rows = tx
            .query(
                "SELECT lr.resource, l.agent, l.mode, l.expires_at FROM lease_resources lr
                 JOIN leases l ON l.id = lr.lease
                 WHERE lr.resource = ANY($1) AND l.expires_at > $2 AND l.agent <> $3
                 ORDER BY lr.resource, l.id",
                &[&names, &now, &agent],
            )
            .await?;
        for r in rows {
            let res: String = r.get(0);
            if overlaps(&res, wanted) {
                found.consider(res, r.get(1), Mode::parse(r.get(2)), u(r.get(3)), mode);
            }
        }
        if let Some((start, end)) = under {
            let rows = tx
                .query(
                    "SELECT lr.resource, l.agent, l.mode, l.expires_at FROM lease_resources lr
                     JOIN leases l ON l.id = lr.lease
                     WHERE lr.resource >= $1 AND lr.resource < $2 AND l.expires_at > $3
                       AND l.agent <> $4
                     ORDER BY lr.resource, l.id",
                    &[&start, &end, &now, &agent],
                )
                .await?;
            for r in rows {
                found.consider(r.get(0), r.get(1), Mode::parse(r.get(2)), u(r.get(3)), mode);
            }
        }
    }
    Ok(found.found())
}

/// The first live waiter queued before `waiter` (or any, for a newcomer) by
/// someone else whose request goes first: FIFO fairness.
async fn waiter_conflict(
    tx: &mut PgTx<'_>,
    agent: &str,
    resources: &[String],
    mode: Mode,
    waiter: Option<u64>,
) -> EnvResult<Option<EnvError>> {
    let before = waiter.map(i).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "SELECT agent, mode, resources, deadline FROM reservation_waiters
             WHERE id < $1 AND deadline > $2 AND agent <> $3 ORDER BY id",
            &[&before, &i(tx.now), &agent],
        )
        .await?;
    let mut own: Option<Vec<(String, Mode)>> = None;
    for r in rows {
        let queued = Mode::parse(r.get(1));
        if !conflicts(queued, mode) {
            continue;
        }
        let theirs: Vec<String> = serde_json::from_str(r.get(2)).unwrap_or_default();
        let own = match &mut own {
            Some(own) => own,
            None => own.insert(live_holdings_of(tx, agent).await?),
        };
        if let Some(clash) = waiter_goes_first(&theirs, queued, resources, mode, own) {
            return Ok(Some(EnvError::Conflict {
                holder: r.get(0),
                resource: clash.clone(),
                expires_at: u(r.get(3)),
            }));
        }
    }
    Ok(None)
}

/// Every resource `agent` holds in a live lease, with its mode.
async fn live_holdings_of(tx: &mut PgTx<'_>, agent: &str) -> EnvResult<Vec<(String, Mode)>> {
    let rows = tx
        .query(
            "SELECT lr.resource, l.mode FROM leases l JOIN lease_resources lr ON lr.lease = l.id
             WHERE l.agent = $1 AND l.expires_at > $2",
            &[&agent, &i(tx.now)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), Mode::parse(r.get(1))))
        .collect())
}

async fn load_lease(tx: &mut PgTx<'_>, id: u64) -> EnvResult<Option<Lease>> {
    let row = tx
        .query_opt(
            "SELECT mode, token, expires_at,
                    array(SELECT resource FROM lease_resources WHERE lease = l.id ORDER BY resource)
             FROM leases l WHERE id = $1",
            &[&i(id)],
        )
        .await?;
    Ok(row.map(|r| Lease {
        id,
        resources: r.get(3),
        mode: Mode::parse(r.get(0)),
        token: u(r.get(1)),
        expires_at: u(r.get(2)),
    }))
}

async fn attempt(
    tx: &mut PgTx<'_>,
    agent: &str,
    resources: &[String],
    mode: Mode,
    ttl_ms: u64,
    waiter: Option<u64>,
    queue_until: Option<u64>,
) -> EnvResult<Attempt> {
    let ended = tx
        .query(
            "SELECT state FROM agents WHERE id = $1 AND state <> 'running'",
            &[&agent],
        )
        .await?;
    if let Some(row) = ended.first() {
        return Err(crate::env::reservations::ended_agent(agent, row.get(0)));
    }
    // Leases past their expiry end here, each journaled, before anything can
    // be granted over them.
    expire(tx).await?;
    let blocked = match lease_conflict(tx, agent, resources, mode).await? {
        Some((conflict, earliest)) => Some((conflict, Some(earliest))),
        None => waiter_conflict(tx, agent, resources, mode, waiter)
            .await?
            .map(|c| {
                let deadline = match &c {
                    EnvError::Conflict { expires_at, .. } => Some(*expires_at),
                    _ => None,
                };
                (c, deadline)
            }),
    };
    if let Some((conflict, retry_at)) = blocked {
        let waiter = match (waiter, queue_until) {
            (None, Some(deadline)) => {
                let row = tx
                    .query_one(
                        "INSERT INTO reservation_waiters (agent, mode, resources, deadline)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                        &[
                            &agent,
                            &mode.as_str(),
                            &json!(resources).to_string(),
                            &i(deadline),
                        ],
                    )
                    .await?;
                Some(u(row.get(0)))
            }
            (w, _) => w,
        };
        return Ok(Attempt::Blocked {
            conflict,
            waiter,
            retry_at,
        });
    }
    if let Some(w) = waiter {
        tx.query("DELETE FROM reservation_waiters WHERE id = $1", &[&i(w)])
            .await?;
    }
    let expires = tx.now.saturating_add(ttl_ms);
    let row = tx
        .query_one(
            "INSERT INTO leases (agent, mode, token, granted_at, expires_at, ttl_ms)
             VALUES ($1, $2, nextval('fence'), $3, $4, $5) RETURNING id, token",
            &[&agent, &mode.as_str(), &i(tx.now), &i(expires), &i(ttl_ms)],
        )
        .await?;
    let (id, token): (i64, i64) = (row.get(0), row.get(1));
    tx.query(
        "INSERT INTO lease_resources (lease, resource) SELECT $1, unnest($2::text[])",
        &[&id, &resources],
    )
    .await?;
    let token = u(token);
    tx.journal(
        agent,
        "lease.granted",
        &format!("lease/{id}"),
        json!({"resources": resources, "mode": mode, "token": token, "expires_at": expires}),
    );
    Ok(Attempt::Granted(Lease {
        id: u(id),
        resources: resources.to_vec(),
        mode,
        token,
        expires_at: expires,
    }))
}

/// A place in line's resources, as stored (a JSON list).
fn resource_list(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// End every lease of `agent` now (it crashed, exited or was stopped).
pub(crate) async fn release_all(tx: &mut PgTx<'_>, agent: &str, why: &str) -> EnvResult<u64> {
    // The statement's own snapshot still sees the resources of the leases
    // it deletes (their rows go with them only when it ends).
    let rows = tx
        .query(
            "WITH gone AS (DELETE FROM leases WHERE agent = $1 RETURNING id)
             SELECT g.id, coalesce(array_agg(r.resource ORDER BY r.resource) FILTER (WHERE r.resource IS NOT NULL), '{}') FROM gone g
             LEFT JOIN lease_resources r ON r.lease = g.id GROUP BY g.id ORDER BY g.id",
            &[&agent],
        )
        .await?;
    for row in &rows {
        let (id, resources): (i64, Vec<String>) = (row.get(0), row.get(1));
        tx.journal(
            agent,
            "lease.released",
            &format!("lease/{id}"),
            json!({"reason": why, "resources": resources}),
        );
    }
    // Its places in line go unjournaled: wake those behind them here.
    let places = tx
        .query(
            "DELETE FROM reservation_waiters WHERE agent = $1 RETURNING resources",
            &[&agent],
        )
        .await?;
    tx.touch_resources(places.iter().flat_map(|r| resource_list(r.get(0))));
    Ok(rows.len() as u64)
}

/// Delete leases past their expiry (journaling each) and waiters past their deadline.
pub(crate) async fn expire(tx: &mut PgTx<'_>) -> EnvResult<u64> {
    let rows = tx
        .query(
            "WITH gone AS (DELETE FROM reservation_waiters WHERE deadline <= $1),
                  dead AS (DELETE FROM leases WHERE expires_at <= $1 RETURNING id, agent)
             SELECT d.id, d.agent, coalesce(array_agg(r.resource ORDER BY r.resource) FILTER (WHERE r.resource IS NOT NULL), '{}') FROM dead d
             LEFT JOIN lease_resources r ON r.lease = d.id GROUP BY d.id, d.agent ORDER BY d.id",
            &[&i(tx.now)],
        )
        .await?;
    for row in &rows {
        let (id, holder, resources): (i64, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        tx.journal(
            "env",
            "lease.expired",
            &format!("lease/{id}"),
            json!({"holder": holder, "resources": resources}),
        );
    }
    Ok(rows.len() as u64)
}

/// Remove `agent`'s place `waiter` from the reservation queue.
async fn leave(tx: &mut PgTx<'_>, agent: &str, waiter: u64) -> EnvResult<()> {
    let gone = tx
        .query(
            "DELETE FROM reservation_waiters WHERE id = $1 RETURNING resources",
            &[&i(waiter)],
        )
        .await?;
    if let Some(row) = gone.first() {
        let resources = resource_list(row.get(0));
        tx.journal(
            agent,
            "lease.wait-ended",
            &format!("waiter/{waiter}"),
            json!({"resources": resources}),
        );
    }
    Ok(())
}

impl PgStore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn reserve_once(
        &self,
        agent: &str,
        resources: &[String],
        mode: Mode,
        ttl_ms: u64,
        waiter: Option<u64>,
        queue_until: Option<u64>,
    ) -> EnvResult<Attempt> {
        let locks = first_segments(resources)
            .into_iter()
            .map(lock_key)
            .collect();
        let (agent, res) = (agent.to_owned(), resources.to_vec());
        self.write_locking(locks, async move |tx| {
            attempt(tx, &agent, &res, mode, ttl_ms, waiter, queue_until).await
        })
        .await
    }

    /// Leave the reservation queue without waiting for the answer (from `Drop`).
    pub(crate) fn leave_queue(&self, agent: &str, waiter: u64) {
        let agent = agent.to_owned();
        self.send_detached(async move |tx| leave(tx, &agent, waiter).await);
    }

    /// Leave the reservation queue, answered after the commit.
    pub(crate) async fn leave_queue_now(&self, agent: &str, waiter: u64) -> EnvResult<()> {
        let agent = agent.to_owned();
        self.write(async move |tx| leave(tx, &agent, waiter).await)
            .await
    }

    pub(crate) async fn renew(&self, agent: &str, lease: u64, ttl_ms: u64) -> EnvResult<Lease> {
        let agent = agent.to_owned();
        self.write(async move |tx| {
            let expires = tx.now.saturating_add(ttl_ms);
            let renewed = tx
                .query(
                    "UPDATE leases SET expires_at = $1, ttl_ms = $5
                     WHERE id = $2 AND agent = $3 AND expires_at > $4 RETURNING id",
                    &[&i(expires), &i(lease), &agent, &i(tx.now), &i(ttl_ms)],
                )
                .await?;
            if renewed.is_empty() {
                return Err(EnvError::not_found(format!(
                    "lease {lease} is not a live lease of yours"
                )));
            }
            tx.journal(
                &agent,
                "lease.renewed",
                &format!("lease/{lease}"),
                json!({"expires_at": expires}),
            );
            load_lease(tx, lease)
                .await?
                .ok_or_else(|| EnvError::not_found(format!("lease {lease}")))
        })
        .await
    }

    pub(crate) async fn release(&self, agent: &str, lease: u64) -> EnvResult<()> {
        let agent = agent.to_owned();
        self.write(async move |tx| {
            let gone = tx
                .query(
                    "WITH gone AS (DELETE FROM leases
                                   WHERE id = $1 AND agent = $2 AND expires_at > $3 RETURNING id)
                     SELECT coalesce(array_agg(r.resource ORDER BY r.resource) FILTER (WHERE r.resource IS NOT NULL), '{}') FROM gone g
                     LEFT JOIN lease_resources r ON r.lease = g.id GROUP BY g.id",
                    &[&i(lease), &agent, &i(tx.now)],
                )
                .await?;
            let Some(row) = gone.first() else {
                return Err(EnvError::not_found(format!(
                    "lease {lease} is not a live lease of yours"
                )));
            };
            let resources: Vec<String> = row.get(0);
            tx.journal(
                &agent,
                "lease.released",
                &format!("lease/{lease}"),
                json!({"resources": resources}),
            );
            Ok(())
        })
        .await
    }

    pub(crate) async fn holdings_page(
        &self,
        prefix: &str,
        holder: Option<&str>,
        after: Option<(&str, u64)>,
        limit: u32,
    ) -> EnvResult<Vec<Holding>> {
        // Start at the prefix, or just past the previous page's last row.
        let (from, past) = after.map_or((prefix, -1), |(r, lease)| (r.max(prefix), i(lease)));
        let sql = format!(
            "SELECT lr.resource, l.id, l.agent, l.mode, l.token, l.expires_at
             FROM lease_resources lr JOIN leases l ON l.id = lr.lease
             WHERE (lr.resource, lr.lease) > ($2, $3) AND starts_with(lr.resource, $4)
               AND l.expires_at > {READ_NOW} AND ($5::text IS NULL OR l.agent = $5)
             ORDER BY lr.resource, lr.lease LIMIT $6"
        );
        let limit = i64::from(limit);
        let rows = self
            .query(
                &sql,
                &[&self.injected_now(), &from, &past, &prefix, &holder, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Holding {
                resource: r.get(0),
                lease: u(r.get(1)),
                holder: r.get(2),
                mode: Mode::parse(r.get(3)),
                token: u(r.get(4)),
                expires_at: u(r.get(5)),
            })
            .collect())
    }

    pub(crate) async fn waiters(&self, limit: u32) -> EnvResult<Vec<Waiter>> {
        let sql = format!(
            "SELECT id, agent, mode, resources, deadline FROM reservation_waiters
             WHERE deadline > {READ_NOW} ORDER BY id LIMIT $2"
        );
        let rows = self
            .query(&sql, &[&self.injected_now(), &i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Waiter {
                id: u(r.get(0)),
                agent: r.get(1),
                mode: Mode::parse(r.get(2)),
                resources: serde_json::from_str(r.get(3)).unwrap_or_default(),
                deadline: u(r.get(4)),
            })
            .collect())
    }
}
