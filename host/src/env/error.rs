//! What environment operations and opening an environment can fail with.

use std::path::PathBuf;

use serde::Serialize;

/// Why an environment operation failed; mirrors the WIT `error` variant so the
/// runtime can hand it to agents unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum EnvError {
    /// Another holder has an overlapping, incompatible reservation.
    #[error("conflict: {resource} is held by {holder} until {expires_at}")]
    Conflict {
        /// The holder (or first queued waiter) in the way.
        holder: String,
        /// The resource as that holder named it.
        resource: String,
        /// When its hold ends unless renewed.
        expires_at: u64,
    },
    /// The fencing token presented is no longer current.
    #[error("stale token {0}: the claim or lease it came from is no longer current")]
    StaleToken(u64),
    /// Nothing with that id or key is visible to the caller.
    #[error("not found: {0}")]
    NotFound(String),
    /// A payload, name or list exceeds its limit.
    #[error("{what} too large: {actual} exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit.
        limit: u64,
        /// What was offered.
        actual: u64,
    },
    /// A compare-and-swap found another version.
    #[error("version mismatch: expected {expected:?}, found {actual:?}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: Option<u64>,
        /// The version there (none: absent).
        actual: Option<u64>,
    },
    /// An argument is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The environment itself failed; nothing happened and the call may be retried.
    #[error("environment unavailable: {0}")]
    Unavailable(String),
}

impl EnvError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
}

/// Shorthand for results of environment operations.
pub type EnvResult<T> = Result<T, EnvError>;

/// Why an environment file could not be opened. The file is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is no environment at the path (and the caller did not ask to create one).
    #[error(
        "no environment at {path}: create one with `wawe env push` (or `wawe run`), \
         or point --env/WAWE_ENV at an existing one"
    )]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The file exists but is not a SQLite database at all.
    #[error(
        "{path} is not a wawe environment (not a SQLite database); \
         point --env at an environment file or at a path that does not exist yet"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// A SQLite database that belongs to some other application.
    #[error(
        "{path} is a SQLite database of another application, not a wawe environment; \
         it was left untouched: choose another path"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// A wawe environment written by a newer wawe.
    #[error(
        "{path} was written by a newer wawe (schema version {found}; this wawe knows up to {supported}); \
         upgrade wawe to open it"
    )]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// The database is damaged.
    #[error(
        "{path} is corrupt ({detail}); it was left untouched: restore it from a backup \
         or start a new environment at another path"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// Another process holds a lock for longer than the busy timeout.
    #[error(
        "{path} is locked by another process (waited {waited_ms} ms); \
         stop the process holding it or try again"
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The file or its directory cannot be written.
    #[error(
        "{path} cannot be written: the file or its directory is read-only (wawe writes the \
         file and its -wal and -shm files beside it); make both writable for this user, \
         or use another path"
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// The disk (or this process's file size limit) is full.
    #[error(
        "{path}: the disk is full (or a file size limit was reached); nothing was changed: \
         check free space and try again"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error(
        "{path}: a disk I/O error ({detail}): the disk may be full or failing; the \
         environment could not be opened: check free space and the disk, then try again"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// A `postgres://` URL that cannot be read.
    #[error("the environment URL {url} is not usable: {detail}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// What is wrong and how to write it.
        detail: String,
    },
    /// No PostgreSQL server answered.
    #[error(
        "cannot reach PostgreSQL at {url} ({detail}); start the server, or check the host \
         and port in the URL"
    )]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// What the connection attempt reported.
        detail: String,
    },
    /// The server refused the login.
    #[error(
        "PostgreSQL at {url} refused the login ({detail}); check the user and password in \
         the URL, and the server's pg_hba.conf"
    )]
    LoginRefused {
        /// The URL, without its password.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// The database named in the URL does not exist.
    #[error(
        "PostgreSQL at {url} has no database {database:?}; create it (createdb {database}) \
         or name an existing one in the URL"
    )]
    NoDatabase {
        /// The URL, without its password.
        url: String,
        /// The database named.
        database: String,
    },
    /// The schema holds tables of some other application.
    #[error(
        "schema {schema:?} at {url} holds tables that are not a wawe environment; it was left \
         untouched: name another schema with ?schema=NAME"
    )]
    ForeignSchema {
        /// The URL, without its password.
        url: String,
        /// The schema.
        schema: String,
    },
    /// Anything else SQLite or the file system reported.
    #[error("cannot open {path}: {detail}")]
    Other {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}
