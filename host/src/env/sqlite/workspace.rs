//! Workspace edits in SQLite: checked, applied and journaled in the writer's
//! transaction, which holds the file's write lock throughout, so no lease
//! can be granted over the editor's between its check and its change.

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, Tx};
use crate::env::limits::{i, u};
use crate::env::workspace::{
    Edit, FileChange, LeaseRow, PathState, WorkspaceRecord, check_lease, check_path_token, edited,
    path_states, registered,
};
use crate::env::{EnvResult, Mode};

fn lease_row(tx: &Tx<'_>, id: u64) -> EnvResult<Option<LeaseRow>> {
    let row = tx
        .conn
        .prepare_cached("SELECT agent, mode, token, expires_at FROM leases WHERE id = ?1")?
        .query_row([i(id)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((agent, mode, token, expires)) = row else {
        return Ok(None);
    };
    let resources = tx
        .conn
        .prepare_cached("SELECT resource FROM lease_resources WHERE lease = ?1")?
        .query_map([i(id)], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(LeaseRow {
        agent,
        mode: Mode::parse(&mode),
        token: u(token),
        expires_at: u(expires),
        resources,
    }))
}

const RECORD: &str = "SELECT id, path, host FROM workspace LIMIT 1";

fn read_record(conn: &rusqlite::Connection) -> EnvResult<Option<WorkspaceRecord>> {
    Ok(conn
        .prepare_cached(RECORD)?
        .query_row([], |r| {
            Ok(WorkspaceRecord {
                id: r.get(0)?,
                path: r.get(1)?,
                host: r.get(2)?,
            })
        })
        .optional()?)
}

fn last_token(tx: &Tx<'_>, path: &str) -> EnvResult<Option<u64>> {
    Ok(tx
        .conn
        .prepare_cached("SELECT token FROM workspace_files WHERE path = ?1")?
        .query_row([path], |r| r.get::<_, i64>(0))
        .optional()?
        .map(u))
}

fn record_path(
    tx: &Tx<'_>,
    agent: &str,
    path: &str,
    token: u64,
    state: PathState<'_>,
) -> EnvResult<()> {
    let (size, hash) = state.unwrap_or((None, None));
    tx.conn
        .prepare_cached(
            "INSERT INTO workspace_files (path, token, size, hash, deleted, agent, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (path) DO UPDATE SET token = ?2, size = ?3, hash = ?4, deleted = ?5,
                 agent = ?6, updated_at = ?7",
        )?
        .execute(params![
            path,
            i(token),
            size.map(i),
            hash,
            state.is_none(),
            agent,
            i(tx.now)
        ])?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn workspace_edit(
        &self,
        agent: &str,
        lease: u64,
        edit: Edit,
        change: Arc<dyn FileChange>,
    ) -> EnvResult<u64> {
        let agent = agent.to_owned();
        self.write(move |tx| {
            let token = check_lease(&agent, lease, lease_row(tx, lease)?, &edit, tx.now)?;
            for path in edit.paths() {
                check_path_token(path, token, last_token(tx, path)?)?;
            }
            // The file change first, as on PostgreSQL: what can still fail
            // fails before anything is recorded.
            change.apply()?;
            for (path, state) in path_states(&edit) {
                record_path(tx, &agent, path, token, state)?;
            }
            tx.record(&agent, edited(&edit, lease, token))?;
            Ok(token)
        })
        .await
    }

    pub(crate) async fn register_workspace(
        &self,
        record: WorkspaceRecord,
    ) -> EnvResult<WorkspaceRecord> {
        self.write(move |tx| {
            if let Some(found) = read_record(tx.conn)? {
                return Ok(found);
            }
            tx.conn
                .prepare_cached(
                    "INSERT INTO workspace (id, path, host, registered_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![record.id, record.path, record.host, i(tx.now)])?;
            tx.record(&record.host, registered(&record))?;
            Ok(record)
        })
        .await
    }

    pub(crate) async fn workspace(&self) -> EnvResult<Option<WorkspaceRecord>> {
        self.read(move |conn, _| read_record(conn)).await
    }
}
