//! Signals: trails whose strength decays exponentially, computed when read.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::SqliteStore;
use crate::env::limits::{i, u};
use crate::env::policy::decayed;
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
                .prepare_cached("SELECT strength, half_life_ms, updated_at FROM signals WHERE trail = ?1")?
                .query_row([&trail], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let (now_strength, kept_half_life) = match old {
                Some((s, hl, at)) => (decayed(s, tx.now.saturating_sub(u(at)), u(hl)), u(hl)),
                None => (0.0, tx.opts.signal_half_life_ms),
            };
            let half_life = half_life_ms.unwrap_or(kept_half_life);
            let strength = (now_strength + amount).clamp(0.0, f64::MAX);
            tx.conn
                .prepare_cached(
                    "INSERT INTO signals (trail, strength, half_life_ms, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (trail) DO UPDATE SET strength = ?2, half_life_ms = ?3, updated_at = ?4",
                )?
                .execute(params![trail, strength, i(half_life), i(tx.now)])?;
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
            let mut stmt = conn.prepare_cached(
                "SELECT trail, strength, half_life_ms, updated_at FROM signals
                 WHERE trail >= ?1 ORDER BY trail",
            )?;
            let mut rows = stmt.query([&prefix])?;
            let mut all = Vec::new();
            while let Some(r) = rows.next()? {
                let trail: String = r.get(0)?;
                if !trail.starts_with(prefix.as_str()) {
                    break;
                }
                let half_life_ms = u(r.get(2)?);
                let strength = decayed(r.get(1)?, now.saturating_sub(u(r.get(3)?)), half_life_ms);
                all.push(TrailStrength {
                    trail,
                    strength,
                    half_life_ms,
                });
            }
            all.sort_by(|a, b| {
                b.strength
                    .total_cmp(&a.strength)
                    .then(a.trail.cmp(&b.trail))
            });
            all.truncate(n as usize);
            Ok(all)
        })
        .await
    }
}
