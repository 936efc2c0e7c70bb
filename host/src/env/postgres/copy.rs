//! Export and import for `wawe env copy` (see [`crate::env::copy`]).

use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::env::EnvResult;
use crate::env::copy::{Cell, Counters, Kind, Snapshot, TABLES, check_empty};

/// Rows per insert statement (PostgreSQL takes at most 65,535 parameters).
const ROWS_PER_INSERT: usize = 1_000;

/// The counters: the sequences, and the journal head.
const COUNTERS: &str = "SELECT
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fence),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM host_numbers),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM leases_id_seq),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM reservation_waiters_id_seq),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tasks_id_seq),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM learnings_id_seq),
    (SELECT seq FROM journal_head)";

fn counters(r: &tokio_postgres::Row) -> Counters {
    Counters {
        fence: r.get(0),
        hosts: r.get(1),
        leases: r.get(2),
        waiters: r.get(3),
        tasks: r.get(4),
        learnings: r.get(5),
        events: r.get(6),
    }
}

/// A cell as a parameter of the column's type (a NULL too has one).
fn param(cell: &Cell, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
    match (cell, kind) {
        (Cell::Null, Kind::Int) => Box::new(None::<i64>),
        (Cell::Null, Kind::Real) => Box::new(None::<f64>),
        (Cell::Null, Kind::Text) => Box::new(None::<String>),
        (Cell::Null, Kind::Bool) => Box::new(None::<bool>),
        (Cell::Int(v), Kind::Bool) => Box::new(*v != 0),
        (Cell::Int(v), Kind::Real) => Box::new(*v as f64),
        (Cell::Int(v), _) => Box::new(*v),
        (Cell::Real(v), _) => Box::new(*v),
        (Cell::Text(v), _) => Box::new(v.clone()),
        (Cell::Bool(v), _) => Box::new(*v),
    }
}

impl PgStore {
    /// Every table and counter, read in one snapshot (a repeatable-read,
    /// read-only transaction on a connection of its own).
    pub(crate) async fn export(&self) -> EnvResult<Snapshot> {
        let client = self.dedicated().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let mut tables = Vec::new();
        for t in TABLES {
            let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
            let sql = format!(
                "SELECT {} FROM {} ORDER BY {}",
                cols.join(", "),
                t.name,
                t.order
            );
            let rows = client.query(&sql, &[]).await?;
            tables.push(
                rows.iter()
                    .map(|r| {
                        t.columns
                            .iter()
                            .enumerate()
                            .map(|(i, (_, kind))| {
                                match kind {
                                    Kind::Int => r.get::<_, Option<i64>>(i).map(Cell::Int),
                                    Kind::Real => r.get::<_, Option<f64>>(i).map(Cell::Real),
                                    Kind::Text => r.get::<_, Option<String>>(i).map(Cell::Text),
                                    Kind::Bool => r.get::<_, Option<bool>>(i).map(Cell::Bool),
                                }
                                .unwrap_or(Cell::Null)
                            })
                            .collect()
                    })
                    .collect(),
            );
        }
        let counters = counters(&client.query_one(COUNTERS, &[]).await?);
        client.batch_execute("COMMIT").await?;
        Ok(Snapshot { counters, tables })
    }

    /// Write `snapshot` into this environment, which must be empty, in one
    /// transaction.
    pub(crate) async fn import(&self, snapshot: Snapshot) -> EnvResult<()> {
        self.write(async move |tx| {
            let counters = counters(&tx.query_one(COUNTERS, &[]).await?);
            let mut rows = 0u64;
            for t in TABLES {
                let n = tx
                    .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
                    .await?;
                rows += n.get::<_, i64>(0) as u64;
            }
            check_empty(&counters, rows)?;
            for (t, rows) in TABLES.iter().zip(&snapshot.tables) {
                let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
                for chunk in rows.chunks(ROWS_PER_INSERT) {
                    let mut values = Vec::with_capacity(chunk.len());
                    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
                    for row in chunk {
                        let start = params.len();
                        let marks: Vec<String> =
                            (1..=cols.len()).map(|i| format!("${}", start + i)).collect();
                        values.push(format!("({})", marks.join(", ")));
                        for (cell, (_, kind)) in row.iter().zip(t.columns) {
                            params.push(param(cell, *kind));
                        }
                    }
                    let sql = format!(
                        "INSERT INTO {} ({}) VALUES {}",
                        t.name,
                        cols.join(", "),
                        values.join(", ")
                    );
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                    tx.query(&sql, &refs).await?;
                }
            }
            // What PostgreSQL keeps beside the shared columns: each blocked
            // task's count of unfinished dependencies, each learning's tag words.
            tx.query(
                "UPDATE tasks t SET pending_deps = (
                     SELECT count(*) FROM task_deps d JOIN tasks o ON o.id = d.depends_on
                     WHERE d.task = t.id AND o.state <> 'done')
                 WHERE state = 'blocked'",
                &[],
            )
            .await?;
            tx.query(
                "UPDATE learnings SET tag_words = coalesce(
                     (SELECT string_agg(value, ' ') FROM json_array_elements_text(tags::json)), '')",
                &[],
            )
            .await?;
            let c = snapshot.counters;
            for (sequence, value) in [
                ("fence", c.fence),
                ("host_numbers", c.hosts),
                ("leases_id_seq", c.leases),
                ("reservation_waiters_id_seq", c.waiters),
                ("tasks_id_seq", c.tasks),
                ("learnings_id_seq", c.learnings),
            ] {
                // setval(…, false) for 0: the next value is 1, as when new.
                tx.query(
                    "SELECT setval($1::text::regclass, greatest($2::int8, 1), $2::int8 > 0)::text",
                    &[&sequence, &value],
                )
                .await?;
            }
            tx.query("UPDATE journal_head SET seq = $1", &[&c.events])
                .await?;
            Ok(())
        })
        .await
    }
}
