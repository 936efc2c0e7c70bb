//! Opening an environment file: refusing what is not ours, creating the
//! schema, and setting the connection pragmas.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{APPLICATION_ID, CREATE, SCHEMA_VERSION, SIGNAL_RANK, WORKSPACE};
use crate::env::limits::u;
use crate::env::policy::signal_rank;
use crate::env::{Durability, EnvOptions, OpenError};

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Check an existing file before anything writes to it: it must be a SQLite
/// database that is either empty or a wawe environment of a known version.
/// Returns whether the schema still has to be created.
pub(crate) fn inspect(path: &Path, opts: &EnvOptions) -> Result<bool, OpenError> {
    configure_sqlite();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(other(path, e)),
    };
    if meta.is_dir() {
        return Err(OpenError::Other {
            path: path.into(),
            detail: "it is a directory; name a file such as swarm.db".into(),
        });
    }
    if meta.len() == 0 {
        return Ok(true);
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut header))
        .map_err(|e| other(path, e))?;
    if read < 16 || &header != SQLITE_MAGIC {
        return Err(OpenError::NotADatabase { path: path.into() });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e, opts))?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
        .map_err(|e| classify(path, e, opts))?;
    let probe = || -> rusqlite::Result<(i64, i64, i64)> {
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        Ok((app, version, tables))
    };
    let (app, version, tables) = probe().map_err(|e| classify(path, e, opts))?;
    if app != APPLICATION_ID {
        if tables == 0 && app == 0 && version == 0 {
            return Ok(true);
        }
        return Err(OpenError::Foreign { path: path.into() });
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerVersion {
            path: path.into(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // A wawe file of our version: make sure its pages are readable.
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| classify(path, e, opts))?;
    if check != "ok" {
        return Err(OpenError::Corrupt {
            path: path.into(),
            detail: check,
        });
    }
    Ok(false)
}

/// Settings of the SQLite library itself, made once before its first use:
/// no memory statistics, which take a global mutex on every allocation (the
/// writer allocates on every statement). Too late once SQLite is initialized
/// (another user of it in this process came first); then nothing changes.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; sqlite3_config only
        // refuses (SQLITE_MISUSE) when SQLite is already initialized.
        let rc =
            unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0) };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!("SQLite was initialized before wawe could configure it ({rc})");
        }
    });
}

/// The page size of new environment files, in bytes.
const PAGE_SIZE: u32 = 1024;

/// Open a read-write connection with the environment's pragmas.
pub(crate) fn connect(path: &Path, opts: &EnvOptions) -> Result<Connection, OpenError> {
    configure_sqlite();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e, opts))?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
        .map_err(|e| classify(path, e, opts))?;
    let limit = opts.wal_size_limit_bytes;
    let sync = match opts.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // Small pages for a new file (an existing one keeps its own): every
    // operation copies the pages it touches into its savepoint's journal and
    // every commit writes them to the log, so 1 KiB pages make the writer
    // about 40% faster than the default 4 KiB (`wawe bench tasks`).
    // Only possible before the file switches to write-ahead logging.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))
        .map_err(|e| classify(path, e, opts))?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| classify(path, e, opts))?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Other {
            path: path.into(),
            detail: format!(
                "cannot switch it to write-ahead logging (journal mode stays {journal:?}); \
                 put the environment on a local file system"
            ),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA journal_size_limit = {limit};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;"
    ))
    .map_err(|e| classify(path, e, opts))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Create the schema in a new (empty) database, in one transaction. Safe when
/// two processes create the same new file at once: the second finds it done.
pub(crate) fn create_schema(
    conn: &Connection,
    path: &Path,
    opts: &EnvOptions,
) -> Result<(), OpenError> {
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if app != APPLICATION_ID {
            conn.execute_batch(CREATE)?;
            conn.execute_batch(WORKSPACE)?;
            conn.execute_batch(SIGNAL_RANK)?;
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
            ))?;
        }
        conn.execute_batch("COMMIT")
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        classify(path, e, opts)
    })
}

/// Bring a wawe file of an older schema version up to this one, in one
/// transaction (each step only adds tables, columns and indexes, so older
/// data stays as it was).
pub(crate) fn migrate(conn: &Connection, path: &Path, opts: &EnvOptions) -> Result<(), OpenError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, e, opts))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < 2 {
            conn.execute_batch(WORKSPACE)?;
        }
        if version < 4 {
            conn.execute_batch("DROP INDEX IF EXISTS events_by_subject")?;
            conn.execute_batch(SIGNAL_RANK)?;
            rank_signals(conn)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT"))
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        classify(path, e, opts)
    })
}

/// Fill in the rank of every trail of a file from before version 4.
fn rank_signals(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare("SELECT trail, strength, updated_at, half_life_ms FROM signals")?;
    let mut write = conn.prepare("UPDATE signals SET rank = ?2 WHERE trail = ?1")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let (at, half_life): (i64, i64) = (r.get(2)?, r.get(3)?);
        let rank = signal_rank(r.get(1)?, u(at), u(half_life));
        write.execute(rusqlite::params![r.get::<_, String>(0)?, rank])?;
    }
    Ok(())
}

fn classify(path: &Path, e: rusqlite::Error, opts: &EnvOptions) -> OpenError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path: path.into() },
        Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt {
            path: path.into(),
            detail: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => OpenError::Locked {
            path: path.into(),
            waited_ms: opts.busy_timeout_ms,
        },
        Some(ErrorCode::ReadOnly) => OpenError::ReadOnly { path: path.into() },
        Some(ErrorCode::DiskFull) => OpenError::DiskFull { path: path.into() },
        Some(ErrorCode::SystemIoFailure) => OpenError::Io {
            path: path.into(),
            detail: e.to_string(),
        },
        _ => OpenError::Other {
            path: path.into(),
            detail: e.to_string(),
        },
    }
}

fn other(path: &Path, e: std::io::Error) -> OpenError {
    OpenError::Other {
        path: path.into(),
        detail: e.to_string(),
    }
}
