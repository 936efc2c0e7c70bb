//! Shared values in PostgreSQL: the key's row is locked (`FOR UPDATE`) for the
//! compare-and-swap, so no update is lost between hosts.

use serde_json::json;

use super::{PgStore, PgTx};
use crate::env::limits::{i, u};
use crate::env::values::{KeyState, check_expected, check_fence};
use crate::env::{EnvError, EnvResult, ValueEntry, Versioned};

async fn current(tx: &mut PgTx<'_>, key: &str) -> EnvResult<Option<KeyState>> {
    let row = tx
        .query_opt(
            "SELECT version, fence, deleted FROM kv WHERE key = $1 FOR UPDATE",
            &[&key],
        )
        .await?;
    Ok(row.map(|r| KeyState {
        version: u(r.get(0)),
        fence: u(r.get(1)),
        deleted: r.get(2),
    }))
}

/// The highest fencing token this environment has issued.
async fn issued(tx: &mut PgTx<'_>) -> EnvResult<u64> {
    let row = tx
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fence",
            &[],
        )
        .await?;
    Ok(u(row.get(0)))
}

impl PgStore {
    pub(crate) async fn get_value(&self, key: &str) -> EnvResult<Option<Versioned>> {
        let rows = self
            .query(
                "SELECT value, version FROM kv WHERE key = $1 AND NOT deleted",
                &[&key],
            )
            .await?;
        Ok(rows.first().map(|r| Versioned {
            value: r.get(0),
            version: u(r.get(1)),
        }))
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
        self.write(async move |tx| {
            loop {
                let row = current(tx, &key).await?;
                check_expected(expected, KeyState::visible(&row))?;
                let stored = row.as_ref().map_or(0, |r| r.fence);
                let issued = match fence {
                    Some(_) => issued(tx).await?,
                    None => 0,
                };
                let new_fence = check_fence(fence, issued, stored)?;
                let version = row.as_ref().map_or(1, |r| r.version + 1);
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                    [&key, &value, &i(version), &i(new_fence), &agent, &i(tx.now)];
                let written = match row {
                    // A new key: another host may be inserting it right now,
                    // so insert only if still absent, else look again.
                    None => tx
                        .query(
                            "INSERT INTO kv (key, value, version, fence, deleted, updated_by, updated_at)
                             VALUES ($1, $2, $3, $4, false, $5, $6)
                             ON CONFLICT (key) DO NOTHING RETURNING key",
                            &params,
                        )
                        .await?
                        .len(),
                    Some(_) => tx
                        .query(
                            "UPDATE kv SET value = $2, version = $3, fence = $4, deleted = false,
                                 updated_by = $5, updated_at = $6 WHERE key = $1 RETURNING key",
                            &params,
                        )
                        .await?
                        .len(),
                };
                if written == 0 {
                    continue;
                }
                tx.journal(
                    &agent,
                    "value.put",
                    &format!("value/{key}"),
                    json!({"version": version}),
                );
                return Ok(version);
            }
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
        self.write(async move |tx| {
            let row = current(tx, &key).await?;
            check_expected(expected, KeyState::visible(&row))?;
            let Some(row) = row.filter(|r| !r.deleted) else {
                return Err(EnvError::not_found(format!("no value under key {key:?}")));
            };
            let issued = match fence {
                Some(_) => issued(tx).await?,
                None => 0,
            };
            let new_fence = check_fence(fence, issued, row.fence)?;
            let version = row.version + 1;
            tx.query(
                "UPDATE kv SET value = '', version = $1, fence = $2, deleted = true,
                     updated_by = $3, updated_at = $4 WHERE key = $5",
                &[&i(version), &i(new_fence), &agent, &i(tx.now), &key],
            )
            .await?;
            tx.journal(
                &agent,
                "value.deleted",
                &format!("value/{key}"),
                json!({"version": version}),
            );
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
        let rows = self
            .query(
                "SELECT key, value, version, fence, updated_by, updated_at FROM kv
                 WHERE key >= $1 AND starts_with(key, $1) AND key > $2 AND NOT deleted
                 ORDER BY key LIMIT $3",
                &[&prefix, &after, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ValueEntry {
                key: r.get(0),
                value: r.get(1),
                version: u(r.get(2)),
                fence: u(r.get(3)),
                updated_by: r.get(4),
                updated_at: u(r.get(5)),
            })
            .collect())
    }
}
