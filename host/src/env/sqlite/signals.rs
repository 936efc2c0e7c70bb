//! Signals: trails whose strength decays exponentially, computed when read.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::SqliteStore;
use crate::env::limits::{i, u};
use crate::env::policy::{decayed, signal_rank};
use crate::env::signals::{PREFIX_SCAN_ROWS, RankedTrail, prefix_end, rank_slack, strongest_of};
use crate::env::{EnvResult, TrailStrength};

impl SqliteStore {
    pub(crate) async fn deposit(
        &self,
        agent: &str,
        trail: &str,
        amount: f64,
        half_life_ms: Option<u64>,
    ) -> EnvResult<f64> {
        let (agent, trail) = (agent.to_owned(), trail.to_owned());
        self.write(move |tx| {
            let old: Option<(f64, i64, i64)> = tx
                .conn
                .prepare_cached(
                    "SELECT strength, half_life_ms, updated_at FROM signals WHERE trail = ?1",
                )?
                .query_row([&trail], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let (now_strength, kept_half_life) = match old {
                Some((s, hl, at)) => (decayed(s, tx.now.saturating_sub(u(at)), u(hl)), u(hl)),
                None => (0.0, tx.opts.signal_half_life_ms),
            };
            let half_life = half_life_ms.unwrap_or(kept_half_life);
            let strength = (now_strength + amount).clamp(0.0, f64::MAX);
            let rank = signal_rank(strength, tx.now, half_life);
            tx.conn
                .prepare_cached(
                    "INSERT INTO signals (trail, strength, half_life_ms, updated_at, rank)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (trail) DO UPDATE
                     SET strength = ?2, half_life_ms = ?3, updated_at = ?4, rank = ?5",
                )?
                .execute(params![trail, strength, i(half_life), i(tx.now), rank])?;
            tx.journal(
                &agent,
                "signal.deposited",
                &format!("signal/{trail}"),
                json!({"amount": amount, "strength": strength}),
            )?;
            Ok(strength)
        })
        .await
    }

    pub(crate) async fn sense(&self, trail: &str) -> EnvResult<f64> {
        let trail = trail.to_owned();
        self.read(move |conn, now| {
            let row: Option<(f64, i64, i64)> = conn
                .prepare_cached(
                    "SELECT strength, half_life_ms, updated_at FROM signals WHERE trail = ?1",
                )?
                .query_row([trail], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            Ok(row.map_or(0.0, |(s, hl, at)| {
                decayed(s, now.saturating_sub(u(at)), u(hl))
            }))
        })
        .await
    }

    pub(crate) async fn strongest(&self, prefix: &str, n: u32) -> EnvResult<Vec<TrailStrength>> {
        let prefix = prefix.to_owned();
        self.read(move |conn, now| {
            let end = prefix_end(&prefix);
            let row = |r: &rusqlite::Row| -> rusqlite::Result<RankedTrail> {
                Ok(RankedTrail {
                    trail: r.get(0)?,
                    strength: r.get(1)?,
                    half_life_ms: u(r.get(2)?),
                    updated_at: u(r.get(3)?),
                })
            };
            let few: Vec<RankedTrail> = conn
                .prepare_cached(UNDER_PREFIX)?
                .query_map(params![prefix, end, PREFIX_SCAN_ROWS as i64], row)?
                .collect::<Result<_, _>>()?;
            if few.len() < PREFIX_SCAN_ROWS {
                return Ok(strongest_of(few, now, n));
            }
            let mut candidates = Vec::new();
            let mut half_life = conn
                .prepare_cached(NEXT_HALF_LIFE)?
                .query_row([-1], |r| r.get::<_, Option<i64>>(0))?;
            while let Some(h) = half_life {
                let top: Vec<(RankedTrail, Option<f64>)> = conn
                    .prepare_cached(BY_RANK)?
                    .query_map(params![h, prefix, end, n], |r| Ok((row(r)?, r.get(4)?)))?
                    .collect::<Result<_, _>>()?;
                match top.last() {
                    Some((_, Some(last))) if top.len() == n as usize => {
                        let floor = last - rank_slack(*last);
                        let mut near = conn.prepare_cached(BY_RANK_DOWN_TO)?;
                        for t in near.query_map(params![h, prefix, end, floor], row)? {
                            candidates.push(t?);
                        }
                    }
                    _ => candidates.extend(top.into_iter().map(|(t, _)| t)),
                }
                half_life = conn
                    .prepare_cached(NEXT_HALF_LIFE)?
                    .query_row([h], |r| r.get(0))?;
            }
            Ok(strongest_of(candidates, now, n))
        })
        .await
    }
}

/// The trails under a prefix, up to a bound (`?3`).
const UNDER_PREFIX: &str = "SELECT trail, strength, half_life_ms, updated_at FROM signals
     WHERE trail >= ?1 AND (?2 IS NULL OR trail < ?2) ORDER BY trail LIMIT ?3";

/// The smallest half-life in use above `?1`.
const NEXT_HALF_LIFE: &str =
    "SELECT min(half_life_ms) FROM signals INDEXED BY signals_by_rank WHERE half_life_ms > ?1";

/// The `?4` highest-ranked trails of one half-life under a prefix.
const BY_RANK: &str = "SELECT trail, strength, half_life_ms, updated_at, rank
     FROM signals INDEXED BY signals_by_rank
     WHERE half_life_ms = ?1 AND trail >= ?2 AND (?3 IS NULL OR trail < ?3)
     ORDER BY rank DESC, trail LIMIT ?4";

/// The trails of one half-life under a prefix ranked at least `?4`.
const BY_RANK_DOWN_TO: &str = "SELECT trail, strength, half_life_ms, updated_at
     FROM signals INDEXED BY signals_by_rank
     WHERE half_life_ms = ?1 AND rank >= ?4 AND trail >= ?2 AND (?3 IS NULL OR trail < ?3)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::sqlite::tests::assert_no_scan_or_sort;

    #[test]
    fn ranking_trails_reads_indexes_in_order() {
        assert_no_scan_or_sort(&[UNDER_PREFIX, NEXT_HALF_LIFE, BY_RANK, BY_RANK_DOWN_TO]);
    }
}
