//! Shared values in SQLite: a `kv` row per key, deleted keys kept as
//! tombstones (see [`crate::env::values`]).

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::{SqliteStore, Tx};
use crate::env::limits::{i, u};
use crate::env::values::{KeyState, check_expected, check_fence};
use crate::env::{EnvError, EnvResult, ValueEntry, Versioned};

fn current(tx: &Tx<'_>, key: &str) -> EnvResult<Option<KeyState>> {
    Ok(tx
        .conn
        .prepare_cached("SELECT version, fence, deleted FROM kv WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(KeyState {
                version: u(r.get(0)?),
                fence: u(r.get(1)?),
                deleted: r.get(2)?,
            })
        })
        .optional()?)
}

/// The highest fencing token this environment has issued.
fn issued(tx: &Tx<'_>) -> EnvResult<u64> {
    let issued: i64 = tx
        .conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'fence'")?
        .query_row([], |r| r.get(0))?;
    Ok(u(issued))
}

impl SqliteStore {
    pub(crate) async fn get_value(&self, key: &str) -> EnvResult<Option<Versioned>> {
        let key = key.to_owned();
        self.read(move |conn, _| {
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
        .await
    }

    pub(crate) async fn put_value(
        &self,
        agent: &str,
        key: &str,
        value: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<u64> {
        let (agent, key, value) = (agent.to_owned(), key.to_owned(), value.to_owned());
        self.write(move |tx| {
            let row = current(tx, &key)?;
            check_expected(expected, KeyState::visible(&row))?;
            let new_fence = check_fence(fence, issued(tx)?, row.as_ref().map_or(0, |r| r.fence))?;
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

    pub(crate) async fn delete_value(
        &self,
        agent: &str,
        key: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<()> {
        let (agent, key) = (agent.to_owned(), key.to_owned());
        self.write(move |tx| {
            let row = current(tx, &key)?;
            check_expected(expected, KeyState::visible(&row))?;
            let Some(row) = row.filter(|r| !r.deleted) else {
                return Err(EnvError::not_found(format!("no value under key {key:?}")));
            };
            let new_fence = check_fence(fence, issued(tx)?, row.fence)?;
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

    pub(crate) async fn list_values(&self, prefix: &str) -> EnvResult<Vec<ValueEntry>> {
        self.values_page(prefix, "", u32::MAX).await
    }

    pub(crate) async fn values_page(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> EnvResult<Vec<ValueEntry>> {
        let (prefix, after) = (prefix.to_owned(), after.to_owned());
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version, fence, updated_by, updated_at FROM kv
                 WHERE key >= ?1 AND key > ?2 AND deleted = 0 ORDER BY key",
            )?;
            let mut rows = stmt.query([&prefix, &after])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                if !key.starts_with(prefix.as_str()) || out.len() >= limit as usize {
                    break;
                }
                out.push(ValueEntry {
                    key,
                    value: r.get(1)?,
                    version: u(r.get(2)?),
                    fence: u(r.get(3)?),
                    updated_by: r.get(4)?,
                    updated_at: u(r.get(5)?),
                });
            }
            Ok(out)
        })
        .await
    }
}
