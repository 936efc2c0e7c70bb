//! Workspace edits in PostgreSQL: checked, applied and journaled in one
//! transaction that holds the advisory locks reservations take on the same
//! first path segments and locks the lease's row, so no host can grant an
//! overlapping lease, nor end this one, between the check and the change.

use std::sync::Arc;

use super::writer::lock_key;
use super::{PgStore, PgTx};
use crate::env::limits::{i, u};
use crate::env::reservations::first_segments;
use crate::env::workspace::{
    Edit, FileChange, LeaseRow, PathState, WorkspaceRecord, check_lease, check_path_token, edited,
    path_states, registered,
};
use crate::env::{EnvResult, Mode};

async fn lease_row(tx: &mut PgTx<'_>, id: u64) -> EnvResult<Option<LeaseRow>> {
    let row = tx
        .query_opt(
            "SELECT agent, mode, token, expires_at,
                    array(SELECT resource FROM lease_resources WHERE lease = l.id)
             FROM leases l WHERE id = $1 FOR UPDATE",
            &[&i(id)],
        )
        .await?;
    Ok(row.map(|r| LeaseRow {
        agent: r.get(0),
        mode: Mode::parse(r.get(1)),
        token: u(r.get(2)),
        expires_at: u(r.get(3)),
        resources: r.get(4),
    }))
}

async fn last_token(tx: &mut PgTx<'_>, path: &str) -> EnvResult<Option<u64>> {
    let row = tx
        .query_opt(
            "SELECT token FROM workspace_files WHERE path = $1 FOR UPDATE",
            &[&path],
        )
        .await?;
    Ok(row.map(|r| u(r.get(0))))
}

async fn record_path(
    tx: &mut PgTx<'_>,
    agent: &str,
    path: &str,
    token: u64,
    state: PathState<'_>,
) -> EnvResult<()> {
    let (size, hash) = state.unwrap_or((None, None));
    let now = i(tx.now);
    tx.query(
        "INSERT INTO workspace_files (path, token, size, hash, deleted, agent, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (path) DO UPDATE SET token = $2, size = $3, hash = $4, deleted = $5,
             agent = $6, updated_at = $7",
        &[
            &path,
            &i(token),
            &size.map(i),
            &hash,
            &state.is_none(),
            &agent,
            &now,
        ],
    )
    .await?;
    Ok(())
}

fn read_record(r: &tokio_postgres::Row) -> WorkspaceRecord {
    WorkspaceRecord {
        id: r.get(0),
        path: r.get(1),
        host: r.get(2),
    }
}

impl PgStore {
    pub(crate) async fn workspace_edit(
        &self,
        agent: &str,
        lease: u64,
        edit: Edit,
        change: Arc<dyn FileChange>,
    ) -> EnvResult<u64> {
        let paths: Vec<String> = edit.paths().into_iter().map(str::to_owned).collect();
        let locks = first_segments(&paths).into_iter().map(lock_key).collect();
        let agent = agent.to_owned();
        self.write_locking(locks, async move |tx| {
            let row = lease_row(tx, lease).await?;
            let token = check_lease(&agent, lease, row, &edit, tx.now)?;
            for path in edit.paths() {
                let last = last_token(tx, path).await?;
                check_path_token(path, token, last)?;
            }
            // The file change first: a write job that fails must have written
            // nothing (the writer runs jobs without savepoints), and the
            // change is what can still fail here.
            change.apply()?;
            for (path, state) in path_states(&edit) {
                record_path(tx, &agent, path, token, state).await?;
            }
            tx.record(&agent, edited(&edit, lease, token));
            Ok(token)
        })
        .await
    }

    pub(crate) async fn register_workspace(
        &self,
        record: WorkspaceRecord,
    ) -> EnvResult<WorkspaceRecord> {
        self.write_locking(vec![lock_key("wawe workspace")], async move |tx| {
            let found = tx
                .query_opt("SELECT id, path, host FROM workspace LIMIT 1", &[])
                .await?;
            if let Some(found) = found {
                return Ok(read_record(&found));
            }
            let now = i(tx.now);
            tx.query(
                "INSERT INTO workspace (id, path, host, registered_at) VALUES ($1, $2, $3, $4)",
                &[&record.id, &record.path, &record.host, &now],
            )
            .await?;
            tx.record(&record.host, registered(&record));
            Ok(record.clone())
        })
        .await
    }

    pub(crate) async fn workspace(&self) -> EnvResult<Option<WorkspaceRecord>> {
        let rows = self
            .query("SELECT id, path, host FROM workspace LIMIT 1", &[])
            .await?;
        Ok(rows.first().map(read_record))
    }
}
