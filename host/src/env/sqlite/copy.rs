//! Export and import for `wawe env copy` (see [`crate::env::copy`]).

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, params_from_iter};

use super::SqliteStore;
use crate::env::EnvResult;
use crate::env::copy::{Cell, Counters, Kind, Snapshot, TABLES, check_empty};

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Cell::Null => ToSqlOutput::Owned(Value::Null),
            Cell::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Cell::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            Cell::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Cell::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(*v))),
        })
    }
}

/// The counters, from `meta` and `sqlite_sequence`.
fn counters(conn: &Connection) -> EnvResult<Counters> {
    let meta = |key: &str| -> EnvResult<i64> {
        Ok(conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    };
    let seq = |table: &str| -> EnvResult<i64> {
        Ok(conn
            .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = ?1")?
            .query_row([table], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    };
    Ok(Counters {
        fence: meta("fence")?,
        hosts: meta("hosts")?,
        leases: seq("leases")?,
        waiters: seq("reservation_waiters")?,
        tasks: seq("tasks")?,
        learnings: seq("learnings")?,
        events: seq("events")?,
    })
}

impl SqliteStore {
    /// Every table and counter, read in one snapshot.
    pub(crate) async fn export(&self) -> EnvResult<Snapshot> {
        self.read(move |conn, _| {
            let mut tables = Vec::new();
            for t in TABLES {
                let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
                let sql = format!(
                    "SELECT {} FROM {} ORDER BY {}",
                    cols.join(", "),
                    t.name,
                    t.order
                );
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt
                    .query_map([], |r| {
                        t.columns
                            .iter()
                            .enumerate()
                            .map(|(i, (_, kind))| {
                                let v: Value = r.get(i)?;
                                Ok(match (v, kind) {
                                    (Value::Null, _) => Cell::Null,
                                    (Value::Integer(n), Kind::Bool) => Cell::Bool(n != 0),
                                    (Value::Integer(n), Kind::Real) => Cell::Real(n as f64),
                                    (Value::Integer(n), _) => Cell::Int(n),
                                    (Value::Real(f), _) => Cell::Real(f),
                                    (Value::Text(s), _) => Cell::Text(s),
                                    (Value::Blob(b), _) => {
                                        Cell::Text(String::from_utf8_lossy(&b).into_owned())
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<Cell>>>()
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                tables.push(rows);
            }
            Ok(Snapshot {
                counters: counters(conn)?,
                tables,
            })
        })
        .await
    }

    /// Write `snapshot` into this environment, which must be empty, in one
    /// transaction.
    pub(crate) async fn import(&self, snapshot: Snapshot) -> EnvResult<()> {
        self.write(move |tx| {
            let conn = tx.conn;
            let mut rows = 0u64;
            for t in TABLES {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| {
                        r.get(0)
                    })?;
                rows += n as u64;
            }
            check_empty(&counters(conn)?, rows)?;
            for (t, rows) in TABLES.iter().zip(&snapshot.tables) {
                let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
                let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
                let mut insert = conn.prepare(&format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    t.name,
                    cols.join(", "),
                    marks.join(", ")
                ))?;
                for row in rows {
                    insert.execute(params_from_iter(row.iter()))?;
                }
            }
            // The full-text index, from the learnings just written.
            conn.execute(
                "INSERT INTO learnings_fts (rowid, topic, body, tags)
                 SELECT id, topic, body,
                        coalesce((SELECT group_concat(value, ' ') FROM json_each(l.tags)), '')
                 FROM learnings l",
                [],
            )?;
            let c = &snapshot.counters;
            for (key, value) in [("fence", c.fence), ("hosts", c.hosts)] {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = ?2",
                    rusqlite::params![key, value],
                )?;
            }
            for (table, value) in [
                ("leases", c.leases),
                ("reservation_waiters", c.waiters),
                ("tasks", c.tasks),
                ("learnings", c.learnings),
                ("events", c.events),
            ] {
                conn.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])?;
                if value > 0 {
                    conn.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                        rusqlite::params![table, value],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }
}
