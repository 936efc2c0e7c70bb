//! The shared workspace: read it with plain `std::fs` under [`ROOT`]; change
//! it only through these functions, each under a lease that covers what it
//! touches.
//!
//! An agent needs `workspace = "read"` (or `"write"`, to change it) in its
//! manifest table. Every change names a [`HoldsLease`] (a
//! [`LeaseGuard`] or a [`Lease`]), so a write
//! without a lease does not compile. The host checks, in one step with the
//! change, that the lease is the caller's, live and exclusive, covers every
//! path touched, and that its token is not older than the last one that
//! changed those paths; a lapsed or superseded lease fails with
//! [`Error::StaleToken`](crate::Error::StaleToken). Writes are atomic: a
//! reader never sees a half-written file, and a crash mid-write leaves the
//! old content whole.
//!
//! ```no_run
//! use std::time::Duration;
//! use wawe_sdk::reservations::{self, Mode};
//! use wawe_sdk::workspace;
//!
//! # fn demo() -> wawe_sdk::Result<()> {
//! let lease = reservations::reserve(["notes/"], Mode::Exclusive, Duration::from_secs(30), Duration::from_secs(5))?;
//! let old = workspace::read_to_string("notes/todo.md").unwrap_or_default();
//! workspace::write(&lease, "notes/todo.md", format!("{old}- one more thing\n"))?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use crate::Result;
use crate::bindings::wawe::env::reservations::Lease;
use crate::bindings::wawe::env::workspace as raw;
use crate::reservations::LeaseGuard;

pub use raw::Written;

/// Where the workspace is in the agent's filesystem (read-only).
pub const ROOT: &str = "/workspace";

/// Something that names a lease to write under.
pub trait HoldsLease {
    /// The lease id.
    fn lease_id(&self) -> u64;
}

impl HoldsLease for LeaseGuard {
    fn lease_id(&self) -> u64 {
        self.id()
    }
}

impl HoldsLease for Lease {
    fn lease_id(&self) -> u64 {
        self.id
    }
}

/// The path in the agent's filesystem of workspace path `path`.
pub fn path(path: impl AsRef<Path>) -> PathBuf {
    Path::new(ROOT).join(path)
}

/// Reads a workspace file whole.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
    std::fs::read(self::path(path))
}

/// Reads a workspace file whole as UTF-8.
pub fn read_to_string(path: impl AsRef<Path>) -> std::io::Result<String> {
    std::fs::read_to_string(self::path(path))
}

/// Writes `contents` to `path` whole (created, or replaced atomically),
/// making missing parent directories.
pub fn write(lease: &impl HoldsLease, path: &str, contents: impl AsRef<[u8]>) -> Result<Written> {
    Ok(raw::write(lease.lease_id(), path, contents.as_ref())?)
}

/// Moves the file or directory at `from` to `to`; the lease must cover both.
pub fn rename(lease: &impl HoldsLease, from: &str, to: &str) -> Result<()> {
    Ok(raw::rename(lease.lease_id(), from, to)?)
}

/// Removes a file or an empty directory.
pub fn remove(lease: &impl HoldsLease, path: &str) -> Result<()> {
    Ok(raw::remove(lease.lease_id(), path)?)
}

/// Makes a directory and any missing parents.
pub fn create_dir(lease: &impl HoldsLease, path: &str) -> Result<()> {
    Ok(raw::create_dir(lease.lease_id(), path)?)
}

/// Starts writing `path` in pieces; nothing is visible until
/// [`FileWriter::commit`], and a writer dropped before that leaves no trace.
pub fn begin_write(lease: &impl HoldsLease, path: &str) -> Result<FileWriter> {
    Ok(FileWriter(raw::begin_write(lease.lease_id(), path)?))
}

/// A file being written in pieces.
#[derive(Debug)]
pub struct FileWriter(raw::FileWriter);

impl FileWriter {
    /// Appends `bytes`.
    pub fn append(&mut self, bytes: impl AsRef<[u8]>) -> Result<()> {
        Ok(self.0.append(bytes.as_ref())?)
    }

    /// Puts the content in place atomically, checked against the lease now.
    pub fn commit(self) -> Result<Written> {
        Ok(self.0.commit()?)
    }
}
