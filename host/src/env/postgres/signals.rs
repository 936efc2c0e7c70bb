//! Signals in PostgreSQL: one upsert computes the decay in SQL, so deposits
//! from several hosts at once all count.

use serde_json::json;
use tokio_postgres::Row;

use super::PgStore;
use super::tasks::READ_NOW;
use crate::env::limits::{i, u};
use crate::env::policy::decayed;
use crate::env::signals::{PREFIX_SCAN_ROWS, RankedTrail, prefix_end, rank_slack, strongest_of};
use crate::env::{EnvResult, TrailStrength};

impl PgStore {
    pub(crate) async fn deposit(
        &self,
        agent: &str,
        trail: &str,
        amount: f64,
        half_life_ms: Option<u64>,
    ) -> EnvResult<f64> {
        let (agent, trail) = (agent.to_owned(), trail.to_owned());
        let half_life = half_life_ms.map(i);
        self.write(async move |tx| {
            // The same arithmetic as `policy::decayed`, in SQL: strength
            // times 0.5 to the power of elapsed / half-life, never below 0.
            let row = tx
                .query_one(
                    "INSERT INTO signals AS s (trail, strength, half_life_ms, updated_at)
                     VALUES ($1, greatest($2::float8, 0), coalesce($3::int8, $4::int8), $5::int8)
                     ON CONFLICT (trail) DO UPDATE SET
                         strength = greatest(
                             s.strength * power(0.5::float8,
                                 greatest($5 - s.updated_at, 0)::float8
                                     / greatest(s.half_life_ms, 1)::float8) + $2, 0),
                         half_life_ms = coalesce($3::int8, s.half_life_ms),
                         updated_at = $5
                     RETURNING strength",
                    &[
                        &trail,
                        &amount,
                        &half_life,
                        &i(tx.opts.signal_half_life_ms),
                        &i(tx.now),
                    ],
                )
                .await?;
            let strength: f64 = row.get(0);
            tx.journal(
                &agent,
                "signal.deposited",
                &format!("signal/{trail}"),
                json!({"amount": amount, "strength": strength}),
            );
            Ok(strength)
        })
        .await
    }

    pub(crate) async fn sense(&self, trail: &str) -> EnvResult<f64> {
        let sql = format!(
            "SELECT strength, half_life_ms, updated_at, {READ_NOW} FROM signals WHERE trail = $2"
        );
        let rows = self.query(&sql, &[&self.injected_now(), &trail]).await?;
        Ok(rows.first().map_or(0.0, |r| {
            decayed(
                r.get(0),
                u(r.get(3)).saturating_sub(u(r.get(2))),
                u(r.get(1)),
            )
        }))
    }

    pub(crate) async fn strongest(&self, prefix: &str, n: u32) -> EnvResult<Vec<TrailStrength>> {
        let end = prefix_end(prefix);
        let row = |r: &Row| RankedTrail {
            trail: r.get(0),
            strength: r.get(1),
            half_life_ms: u(r.get(2)),
            updated_at: u(r.get(3)),
        };
        let sql = format!(
            "SELECT trail, strength, half_life_ms, updated_at, {READ_NOW} FROM signals
             WHERE trail >= $2 AND ($3::text IS NULL OR trail < $3) ORDER BY trail LIMIT $4"
        );
        let few = self
            .query(
                &sql,
                &[
                    &self.injected_now(),
                    &prefix,
                    &end,
                    &(PREFIX_SCAN_ROWS as i64),
                ],
            )
            .await?;
        let Some(now) = few.first().map(|r| u(r.get(4))) else {
            return Ok(Vec::new());
        };
        if few.len() < PREFIX_SCAN_ROWS {
            return Ok(strongest_of(few.iter().map(row).collect(), now, n));
        }
        let next_half_life =
            "SELECT min(half_life_ms) FROM signals WHERE half_life_ms > $1".to_string();
        let by_rank = format!(
            "SELECT trail, strength, half_life_ms, updated_at, {RANK} FROM signals
             WHERE half_life_ms = $1 AND trail >= $2 AND ($3::text IS NULL OR trail < $3)
             ORDER BY {RANK} DESC NULLS LAST, trail LIMIT $4"
        );
        let down_to = format!(
            "SELECT trail, strength, half_life_ms, updated_at FROM signals
             WHERE half_life_ms = $1 AND {RANK} >= $4 AND trail >= $2
               AND ($3::text IS NULL OR trail < $3)"
        );
        let mut candidates = Vec::new();
        let mut half_life: Option<i64> = self.query(&next_half_life, &[&-1i64]).await?[0].get(0);
        while let Some(h) = half_life {
            let top = self
                .query(&by_rank, &[&h, &prefix, &end, &i64::from(n)])
                .await?;
            let last: Option<f64> = top.last().and_then(|r| r.get(4));
            match last {
                Some(last) if top.len() == n as usize => {
                    let floor = last - rank_slack(last);
                    let near = self.query(&down_to, &[&h, &prefix, &end, &floor]).await?;
                    candidates.extend(near.iter().map(row));
                }
                _ => candidates.extend(top.iter().map(row)),
            }
            half_life = self.query(&next_half_life, &[&h]).await?[0].get(0);
        }
        Ok(strongest_of(candidates, now, n))
    }
}

/// A trail's rank (`policy::signal_rank`) in SQL; `signals_by_rank` indexes
/// this very expression, so queries must spell it the same.
pub(crate) const RANK: &str = "(CASE WHEN strength > 0 THEN ln(strength) / ln(2::float8) + updated_at::float8 / greatest(half_life_ms, 1)::float8 END)";
