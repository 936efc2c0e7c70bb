//! Signals in PostgreSQL: one upsert computes the decay in SQL, so deposits
//! from several hosts at once all count.

use serde_json::json;

use super::PgStore;
use super::tasks::READ_NOW;
use crate::env::limits::{i, u};
use crate::env::policy::decayed;
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
        let sql = format!(
            "SELECT trail, strength, half_life_ms, updated_at, {READ_NOW} FROM signals
             WHERE trail >= $2 AND starts_with(trail, $2) ORDER BY trail"
        );
        let rows = self.query(&sql, &[&self.injected_now(), &prefix]).await?;
        let mut all: Vec<TrailStrength> = rows
            .iter()
            .map(|r| TrailStrength {
                trail: r.get(0),
                strength: decayed(
                    r.get(1),
                    u(r.get(4)).saturating_sub(u(r.get(3))),
                    u(r.get(2)),
                ),
                half_life_ms: u(r.get(2)),
            })
            .collect();
        all.sort_by(|a, b| {
            b.strength
                .total_cmp(&a.strength)
                .then(a.trail.cmp(&b.trail))
        });
        all.truncate(n as usize);
        Ok(all)
    }
}
