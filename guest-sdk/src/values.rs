//! Shared values: a versioned key-value store with compare-and-swap and fencing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wawe::env::values as raw;
use crate::{Result, Token};

pub use raw::Versioned;

/// Conditions on a write ([`put`] or [`delete`]): an expected version
/// (compare-and-swap) and a fencing token.
///
/// The default (from [`WriteOptions::new`]) writes whatever is there, unfenced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    expected_version: Option<u64>,
    fence: Option<Token>,
}

impl WriteOptions {
    /// Unconditional, unfenced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write only if the key is at `version` (else [`Error::VersionMismatch`](crate::Error::VersionMismatch)).
    pub fn if_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Write only if the key is absent.
    pub fn if_absent(self) -> Self {
        self.if_version(0)
    }

    /// Present a lease's fencing token: a token older than one already used on
    /// this key is refused with [`Error::StaleToken`](crate::Error::StaleToken).
    pub fn fence(mut self, token: Token) -> Self {
        self.fence = Some(token);
        self
    }
}

/// The value of `key` with its version, or `None`.
pub fn get(key: &str) -> Result<Option<Versioned>> {
    Ok(raw::get(key)?)
}

/// The value of `key` decoded from JSON, or `None`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match get(key)? {
        None => Ok(None),
        Some(versioned) => Ok(Some(serde_json::from_str(&versioned.value)?)),
    }
}

/// Writes `key` under `options`; returns the new version (1 for the first write).
pub fn put(key: &str, value: &str, options: WriteOptions) -> Result<u64> {
    Ok(raw::put(
        key,
        value,
        options.expected_version,
        options.fence,
    )?)
}

/// Writes `value` as JSON to `key` under `options`; returns the new version.
pub fn put_json<T: Serialize + ?Sized>(key: &str, value: &T, options: WriteOptions) -> Result<u64> {
    put(key, &serde_json::to_string(value)?, options)
}

/// Deletes `key` under `options`. Fails with
/// [`Error::NotFound`](crate::Error::NotFound) when there is nothing to delete.
///
/// A deleted key keeps counting: its next write gets the next version, and
/// fencing tokens older than one used on it stay stale.
pub fn delete(key: &str, options: WriteOptions) -> Result<()> {
    Ok(raw::delete(key, options.expected_version, options.fence)?)
}
