//! Shared values: versioned key-value with compare-and-swap and fencing.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::{Env, Tx, check_name, check_payload, i, u};
use crate::env::{AgentId, EnvError, EnvResult, ValueEntry, Versioned};

fn current(tx: &Tx<'_>, key: &str) -> EnvResult<Option<(u64, u64)>> {
    Ok(tx
        .conn
        .prepare_cached("SELECT version, fence FROM kv WHERE key = ?1")?
        .query_row([key], |r| Ok((u(r.get(0)?), u(r.get(1)?))))
        .optional()?)
}

fn check_expected(expected: Option<u64>, actual: Option<u64>) -> EnvResult<()> {
    let ok = match expected {
        None => true,
        Some(0) => actual.is_none(),
        Some(v) => actual == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(EnvError::VersionMismatch { expected, actual })
    }
}

impl Env {
    /// The value of `key` and its version, if set.
    pub fn get_value(&self, key: &str) -> EnvResult<Option<Versioned>> {
        self.read(|conn, _| {
            Ok(conn
                .prepare_cached("SELECT value, version FROM kv WHERE key = ?1")?
                .query_row([key], |r| {
                    Ok(Versioned {
                        value: r.get(0)?,
                        version: u(r.get(1)?),
                    })
                })
                .optional()?)
        })
    }

    /// Write `key`; returns the new version. `expected`: `None` writes
    /// whatever is there, `Some(0)` only if absent, `Some(v)` only at version
    /// `v`. `fence`: a lease's fencing token; a token older than one already
    /// used on this key is refused as stale.
    pub async fn put_value(
        &self,
        who: &AgentId,
        key: &str,
        value: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<u64> {
        check_name("key", key, self.options())?;
        check_payload("value", value, self.options())?;
        let (agent, key, value) = (who.as_str().to_owned(), key.to_owned(), value.to_owned());
        self.write(move |tx| {
            let now_row = current(tx, &key)?;
            check_expected(expected, now_row.map(|(v, _)| v))?;
            let stored_fence = now_row.map_or(0, |(_, f)| f);
            if let Some(token) = fence {
                let issued: i64 = tx
                    .conn
                    .prepare_cached("SELECT value FROM meta WHERE key = 'fence'")?
                    .query_row([], |r| r.get(0))?;
                if token > u(issued) {
                    return Err(EnvError::invalid(format!(
                        "fencing token {token} was never issued by this environment"
                    )));
                }
                if token < stored_fence {
                    return Err(EnvError::StaleToken(token));
                }
            }
            let version = now_row.map_or(1, |(v, _)| v + 1);
            let new_fence = fence.unwrap_or(0).max(stored_fence);
            tx.conn
                .prepare_cached(
                    "INSERT INTO kv (key, value, version, fence, updated_by, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (key) DO UPDATE SET value = ?2, version = ?3, fence = ?4,
                         updated_by = ?5, updated_at = ?6",
                )?
                .execute(params![
                    key,
                    value,
                    i(version),
                    i(new_fence),
                    agent,
                    i(tx.now)
                ])?;
            tx.journal(
                &agent,
                "value.put",
                &format!("value/{key}"),
                json!({"version": version}),
            )?;
            Ok(version)
        })
        .await
    }

    /// Delete `key`, under the same `expected` rule as [`Env::put_value`].
    pub async fn delete_value(
        &self,
        who: &AgentId,
        key: &str,
        expected: Option<u64>,
    ) -> EnvResult<()> {
        check_name("key", key, self.options())?;
        let (agent, key) = (who.as_str().to_owned(), key.to_owned());
        self.write(move |tx| {
            let now_row = current(tx, &key)?;
            check_expected(expected, now_row.map(|(v, _)| v))?;
            let Some((version, _)) = now_row else {
                return Err(EnvError::not_found(format!("no value under key {key:?}")));
            };
            tx.conn
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([&key])?;
            tx.journal(
                &agent,
                "value.deleted",
                &format!("value/{key}"),
                json!({"version": version}),
            )?;
            Ok(())
        })
        .await
    }

    /// Every value whose key starts with `prefix`, by key.
    pub fn list_values(&self, prefix: &str) -> EnvResult<Vec<ValueEntry>> {
        self.read(|conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version, updated_by, updated_at FROM kv WHERE key >= ?1 ORDER BY key",
            )?;
            let mut rows = stmt.query([prefix])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                if !key.starts_with(prefix) {
                    break;
                }
                out.push(ValueEntry {
                    key,
                    value: r.get(1)?,
                    version: u(r.get(2)?),
                    updated_by: r.get(3)?,
                    updated_at: u(r.get(4)?),
                });
            }
            Ok(out)
        })
    }
}
