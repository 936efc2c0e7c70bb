//! Shared values: versioned key-value with compare-and-swap and fencing.
//!
//! A deleted key keeps its row as a tombstone, so its version and fence keep
//! growing across deletes: a compare-and-swap against a version read before a
//! delete fails, and a stale fencing token stays stale.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::{Env, Tx, check_name, check_payload, i, u};
use crate::env::{AgentId, EnvError, EnvResult, ValueEntry, Versioned};

/// A key's row: its last version, its highest fence, and whether it is deleted.
struct Row {
    version: u64,
    fence: u64,
    deleted: bool,
}

impl Row {
    /// The version callers see: none while absent.
    fn visible(row: &Option<Row>) -> Option<u64> {
        row.as_ref().filter(|r| !r.deleted).map(|r| r.version)
    }
}

fn current(tx: &Tx<'_>, key: &str) -> EnvResult<Option<Row>> {
    Ok(tx
        .conn
        .prepare_cached("SELECT version, fence, deleted FROM kv WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(Row {
                version: u(r.get(0)?),
                fence: u(r.get(1)?),
                deleted: r.get(2)?,
            })
        })
        .optional()?)
}

/// Check a fencing token: issued by this environment, and not older than
/// one already used on the key. Returns the key's new highest fence.
fn check_fence(tx: &Tx<'_>, fence: Option<u64>, stored: u64) -> EnvResult<u64> {
    let Some(token) = fence else {
        return Ok(stored);
    };
    let issued: i64 = tx
        .conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'fence'")?
        .query_row([], |r| r.get(0))?;
    if token > u(issued) {
        return Err(EnvError::invalid(format!(
            "fencing token {token} was never issued by this environment"
        )));
    }
    if token < stored {
        return Err(EnvError::StaleToken(token));
    }
    Ok(token)
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
                .prepare_cached("SELECT value, version FROM kv WHERE key = ?1 AND deleted = 0")?
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
            let row = current(tx, &key)?;
            check_expected(expected, Row::visible(&row))?;
            let new_fence = check_fence(tx, fence, row.as_ref().map_or(0, |r| r.fence))?;
            let version = row.as_ref().map_or(1, |r| r.version + 1);
            tx.conn
                .prepare_cached(
                    "INSERT INTO kv (key, value, version, fence, deleted, updated_by, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                     ON CONFLICT (key) DO UPDATE SET value = ?2, version = ?3, fence = ?4,
                         deleted = 0, updated_by = ?5, updated_at = ?6",
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

    /// Delete `key`, under the same `expected` and `fence` rules as
    /// [`Env::put_value`]. The key's version and fence live on, so they keep
    /// growing if it is written again.
    pub async fn delete_value(
        &self,
        who: &AgentId,
        key: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<()> {
        check_name("key", key, self.options())?;
        let (agent, key) = (who.as_str().to_owned(), key.to_owned());
        self.write(move |tx| {
            let row = current(tx, &key)?;
            check_expected(expected, Row::visible(&row))?;
            let Some(row) = row.filter(|r| !r.deleted) else {
                return Err(EnvError::not_found(format!("no value under key {key:?}")));
            };
            let new_fence = check_fence(tx, fence, row.fence)?;
            let version = row.version + 1;
            tx.conn
                .prepare_cached(
                    "UPDATE kv SET value = '', version = ?1, fence = ?2, deleted = 1,
                         updated_by = ?3, updated_at = ?4 WHERE key = ?5",
                )?
                .execute(params![i(version), i(new_fence), agent, i(tx.now), key])?;
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
                "SELECT key, value, version, updated_by, updated_at FROM kv
                 WHERE key >= ?1 AND deleted = 0 ORDER BY key",
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
