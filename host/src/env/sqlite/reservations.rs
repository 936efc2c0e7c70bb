//! Reservations: leases on resource paths, granted all-or-none, first come
//! first served among waiters, with fencing tokens.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::{SqliteStore, Tx};
use crate::env::limits::{i, u};
use crate::env::reservations::{FirstConflict, conflicts, lookups, waiter_goes_first};
use crate::env::resource::overlaps;
use crate::env::store::Attempt;
use crate::env::{EnvError, EnvResult, Holding, Lease, Mode, Waiter};

/// The first live lease of someone else that conflicts with `resources` in
/// `mode`, and the earliest expiry among all conflicting leases.
fn lease_conflict(
    conn: &Connection,
    now: u64,
    agent: &str,
    resources: &[String],
    mode: Mode,
) -> EnvResult<Option<(EnvError, u64)>> {
    let mut exact = conn.prepare_cached(
        "SELECT lr.resource, l.agent, l.mode, l.expires_at FROM lease_resources lr
         JOIN leases l ON l.id = lr.lease
         WHERE lr.resource = ?1 AND l.expires_at > ?2 AND l.agent != ?3",
    )?;
    let mut range = conn.prepare_cached(
        "SELECT lr.resource, l.agent, l.mode, l.expires_at FROM lease_resources lr
         JOIN leases l ON l.id = lr.lease
         WHERE lr.resource >= ?1 AND lr.resource < ?2 AND l.expires_at > ?3 AND l.agent != ?4",
    )?;
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, String, String, i64)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    let mut found = FirstConflict::default();
    for wanted in resources {
        let (names, under) = lookups(wanted);
        for name in &names {
            for held in exact.query_map(params![name, i(now), agent], row)? {
                let (res, holder, held_mode, exp) = held?;
                if overlaps(&res, wanted) {
                    found.consider(res, holder, Mode::parse(&held_mode), u(exp), mode);
                }
            }
        }
        if let Some((start, end)) = under {
            for held in range.query_map(params![start, end, i(now), agent], row)? {
                let (res, holder, held_mode, exp) = held?;
                found.consider(res, holder, Mode::parse(&held_mode), u(exp), mode);
            }
        }
    }
    Ok(found.found())
}

/// The first live waiter queued before `waiter` (or any, for a newcomer) by
/// someone else whose request goes first: FIFO fairness.
fn waiter_conflict(
    conn: &Connection,
    now: u64,
    agent: &str,
    resources: &[String],
    mode: Mode,
    waiter: Option<u64>,
) -> EnvResult<Option<EnvError>> {
    let before = waiter.map(i).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT agent, mode, resources, deadline FROM reservation_waiters
         WHERE id < ?1 AND deadline > ?2 AND agent != ?3 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![before, i(now), agent])?;
    let mut own: Option<Vec<(String, Mode)>> = None;
    while let Some(r) = rows.next()? {
        let queued = Mode::parse(&r.get::<_, String>(1)?);
        if !conflicts(queued, mode) {
            continue;
        }
        let theirs: Vec<String> = serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default();
        let own = match &mut own {
            Some(own) => own,
            None => own.insert(live_holdings_of(conn, now, agent)?),
        };
        if let Some(clash) = waiter_goes_first(&theirs, queued, resources, mode, own) {
            return Ok(Some(EnvError::Conflict {
                holder: r.get(0)?,
                resource: clash.clone(),
                expires_at: u(r.get(3)?),
            }));
        }
    }
    Ok(None)
}

/// Every resource `agent` holds in a live lease, with its mode.
fn live_holdings_of(conn: &Connection, now: u64, agent: &str) -> EnvResult<Vec<(String, Mode)>> {
    Ok(conn
        .prepare_cached(
            "SELECT lr.resource, l.mode FROM leases l JOIN lease_resources lr ON lr.lease = l.id
             WHERE l.agent = ?1 AND l.expires_at > ?2",
        )?
        .query_map(params![agent, i(now)], |r| {
            Ok((r.get(0)?, Mode::parse(&r.get::<_, String>(1)?)))
        })?
        .collect::<Result<_, _>>()?)
}

pub(crate) fn load_lease(conn: &Connection, id: u64) -> EnvResult<Option<Lease>> {
    let row = conn
        .prepare_cached("SELECT mode, token, expires_at FROM leases WHERE id = ?1")?
        .query_row([i(id)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let Some((mode, token, expires)) = row else {
        return Ok(None);
    };
    let resources = conn
        .prepare_cached("SELECT resource FROM lease_resources WHERE lease = ?1 ORDER BY resource")?
        .query_map([i(id)], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(Lease {
        id,
        resources,
        mode: Mode::parse(&mode),
        token: u(token),
        expires_at: u(expires),
    }))
}

#[allow(clippy::too_many_arguments)]
fn attempt(
    tx: &mut Tx<'_>,
    agent: &str,
    resources: &[String],
    mode: Mode,
    ttl_ms: u64,
    waiter: Option<u64>,
    queue_until: Option<u64>,
) -> EnvResult<Attempt> {
    let ended: Option<String> = tx
        .conn
        .prepare_cached("SELECT state FROM agents WHERE id = ?1 AND state != 'running'")?
        .query_row([agent], |r| r.get(0))
        .optional()?;
    if let Some(state) = ended {
        return Err(crate::env::reservations::ended_agent(agent, &state));
    }
    let now = tx.now;
    // Leases past their expiry end here, each journaled, before anything can
    // be granted over them: in the journal, every lease ends before a
    // conflicting one begins (keepalive extends leases without an event, so
    // their expiry cannot be read off the journal).
    let any_expired: bool = tx
        .conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM leases WHERE expires_at <= ?1)")?
        .query_row([i(now)], |r| r.get(0))?;
    if any_expired {
        expire(tx)?;
    }
    let blocked = match lease_conflict(tx.conn, now, agent, resources, mode)? {
        Some((conflict, earliest)) => Some((conflict, Some(earliest))),
        None => waiter_conflict(tx.conn, now, agent, resources, mode, waiter)?.map(|c| {
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
                let id = tx
                    .conn
                    .prepare_cached(
                        "INSERT INTO reservation_waiters (agent, mode, resources, deadline)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .insert(params![
                        agent,
                        mode.as_str(),
                        json!(resources).to_string(),
                        i(deadline)
                    ])?;
                Some(u(id))
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
        tx.conn
            .prepare_cached("DELETE FROM reservation_waiters WHERE id = ?1")?
            .execute([i(w)])?;
    }
    let token = tx.next_token()?;
    let expires = now.saturating_add(ttl_ms);
    let id = tx
        .conn
        .prepare_cached(
            "INSERT INTO leases (agent, mode, token, granted_at, expires_at, ttl_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .insert(params![
            agent,
            mode.as_str(),
            i(token),
            i(now),
            i(expires),
            i(ttl_ms)
        ])?;
    let mut add = tx
        .conn
        .prepare_cached("INSERT INTO lease_resources (lease, resource) VALUES (?1, ?2)")?;
    for r in resources {
        add.execute(params![id, r])?;
    }
    let lease = Lease {
        id: u(id),
        resources: resources.to_vec(),
        mode,
        token,
        expires_at: expires,
    };
    tx.journal(
        agent,
        "lease.granted",
        &format!("lease/{id}"),
        json!({"resources": resources, "mode": mode, "token": token, "expires_at": expires}),
    )?;
    Ok(Attempt::Granted(lease))
}

/// The resources lease `id` holds (read before it ends, for the journal).
fn resources_of(conn: &Connection, id: i64) -> EnvResult<Vec<String>> {
    Ok(conn
        .prepare_cached("SELECT resource FROM lease_resources WHERE lease = ?1 ORDER BY resource")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The resources of the places in line `sql` selects (with `param`).
fn waiting_for(
    conn: &Connection,
    sql: &str,
    param: impl rusqlite::ToSql,
) -> EnvResult<Vec<String>> {
    let lists: Vec<String> = conn
        .prepare_cached(sql)?
        .query_map([param], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(lists
        .iter()
        .flat_map(|l| serde_json::from_str::<Vec<String>>(l).unwrap_or_default())
        .collect())
}

/// End every lease of `agent` now (it crashed, exited or was stopped).
pub(crate) fn release_all(tx: &mut Tx<'_>, agent: &str, why: &str) -> EnvResult<u64> {
    let ids: Vec<i64> = tx
        .conn
        .prepare_cached("SELECT id FROM leases WHERE agent = ?1 ORDER BY id")?
        .query_map([agent], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let resources = resources_of(tx.conn, *id)?;
        tx.conn
            .prepare_cached("DELETE FROM leases WHERE id = ?1")?
            .execute([id])?;
        tx.journal(
            agent,
            "lease.released",
            &format!("lease/{id}"),
            json!({"reason": why, "resources": resources}),
        )?;
    }
    // Its places in line go unjournaled: wake those behind them here.
    let places = waiting_for(
        tx.conn,
        "SELECT resources FROM reservation_waiters WHERE agent = ?1",
        agent,
    )?;
    if !places.is_empty() {
        tx.touch_resources(places);
        tx.conn
            .prepare_cached("DELETE FROM reservation_waiters WHERE agent = ?1")?
            .execute([agent])?;
    }
    Ok(ids.len() as u64)
}

/// Delete leases past their expiry, journaling each.
pub(crate) fn expire(tx: &mut Tx<'_>) -> EnvResult<u64> {
    let expired: Vec<(i64, String)> = tx
        .conn
        .prepare_cached("SELECT id, agent FROM leases WHERE expires_at <= ?1 ORDER BY id")?
        .query_map([i(tx.now)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, holder) in &expired {
        let resources = resources_of(tx.conn, *id)?;
        tx.conn
            .prepare_cached("DELETE FROM leases WHERE id = ?1")?
            .execute([id])?;
        tx.journal(
            "env",
            "lease.expired",
            &format!("lease/{id}"),
            json!({"holder": holder, "resources": resources}),
        )?;
    }
    tx.conn
        .prepare_cached("DELETE FROM reservation_waiters WHERE deadline <= ?1")?
        .execute([i(tx.now)])?;
    Ok(expired.len() as u64)
}

/// Remove `agent`'s place `waiter` from the reservation queue.
fn leave(tx: &mut Tx<'_>, agent: &str, waiter: u64) -> EnvResult<()> {
    let resources = waiting_for(
        tx.conn,
        "SELECT resources FROM reservation_waiters WHERE id = ?1",
        i(waiter),
    )?;
    let n = tx
        .conn
        .prepare_cached("DELETE FROM reservation_waiters WHERE id = ?1")?
        .execute([i(waiter)])?;
    if n > 0 {
        tx.journal(
            agent,
            "lease.wait-ended",
            &format!("waiter/{waiter}"),
            json!({"resources": resources}),
        )?;
    }
    Ok(())
}

impl SqliteStore {
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
        let (agent, res) = (agent.to_owned(), resources.to_vec());
        self.write(move |tx| attempt(tx, &agent, &res, mode, ttl_ms, waiter, queue_until))
            .await
    }

    /// Leave the reservation queue without waiting for the answer (from `Drop`).
    pub(crate) fn leave_queue(&self, agent: &str, waiter: u64) {
        let agent = agent.to_owned();
        self.send_detached(move |tx| leave(tx, &agent, waiter));
    }

    /// Leave the reservation queue, answered after the commit.
    pub(crate) async fn leave_queue_now(&self, agent: &str, waiter: u64) -> EnvResult<()> {
        let agent = agent.to_owned();
        self.write(move |tx| leave(tx, &agent, waiter)).await
    }

    pub(crate) async fn renew(&self, agent: &str, lease: u64, ttl_ms: u64) -> EnvResult<Lease> {
        let agent = agent.to_owned();
        self.write(move |tx| {
            let expires = tx.now.saturating_add(ttl_ms);
            let n = tx
                .conn
                .prepare_cached(
                    "UPDATE leases SET expires_at = ?1, ttl_ms = ?5
                     WHERE id = ?2 AND agent = ?3 AND expires_at > ?4",
                )?
                .execute(params![i(expires), i(lease), agent, i(tx.now), i(ttl_ms)])?;
            if n == 0 {
                return Err(EnvError::not_found(format!(
                    "lease {lease} is not a live lease of yours"
                )));
            }
            tx.journal(
                &agent,
                "lease.renewed",
                &format!("lease/{lease}"),
                json!({"expires_at": expires}),
            )?;
            load_lease(tx.conn, lease)?.ok_or_else(|| EnvError::not_found(format!("lease {lease}")))
        })
        .await
    }

    pub(crate) async fn release(&self, agent: &str, lease: u64) -> EnvResult<()> {
        let agent = agent.to_owned();
        self.write(move |tx| {
            let resources = resources_of(tx.conn, i(lease))?;
            let n = tx
                .conn
                .prepare_cached(
                    "DELETE FROM leases WHERE id = ?1 AND agent = ?2 AND expires_at > ?3",
                )?
                .execute(params![i(lease), agent, i(tx.now)])?;
            if n == 0 {
                return Err(EnvError::not_found(format!(
                    "lease {lease} is not a live lease of yours"
                )));
            }
            tx.journal(
                &agent,
                "lease.released",
                &format!("lease/{lease}"),
                json!({"resources": resources}),
            )?;
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
        let (from, prefix, holder) = (
            from.to_owned(),
            prefix.to_owned(),
            holder.map(str::to_owned),
        );
        self.read(move |conn, now| {
            let mut stmt = conn.prepare_cached(
                "SELECT lr.resource, l.id, l.agent, l.mode, l.token, l.expires_at
                 FROM lease_resources lr JOIN leases l ON l.id = lr.lease
                 WHERE (lr.resource, lr.lease) > (?1, ?2) AND l.expires_at > ?3
                   AND (?4 IS NULL OR l.agent = ?4)
                 ORDER BY lr.resource, lr.lease",
            )?;
            let mut rows = stmt.query(params![from, past, i(now), holder])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let resource: String = r.get(0)?;
                if !resource.starts_with(prefix.as_str()) || out.len() >= limit as usize {
                    break;
                }
                out.push(Holding {
                    resource,
                    lease: u(r.get(1)?),
                    holder: r.get(2)?,
                    mode: Mode::parse(&r.get::<_, String>(3)?),
                    token: u(r.get(4)?),
                    expires_at: u(r.get(5)?),
                });
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn waiters(&self, limit: u32) -> EnvResult<Vec<Waiter>> {
        self.read(move |conn, now| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, agent, mode, resources, deadline FROM reservation_waiters
                     WHERE deadline > ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![i(now), limit], |r| {
                    Ok(Waiter {
                        id: u(r.get(0)?),
                        agent: r.get(1)?,
                        mode: Mode::parse(&r.get::<_, String>(2)?),
                        resources: serde_json::from_str(&r.get::<_, String>(3)?)
                            .unwrap_or_default(),
                        deadline: u(r.get(4)?),
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}
