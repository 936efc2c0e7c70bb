//! Shared values: a versioned key-value store with compare-and-swap and fencing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wawe::env::values as raw;
use crate::{Error, Result, Token};

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

    /// Write only if the key is at `version` (else [`Error::VersionMismatch`]).
    pub fn if_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Write only if the key is absent.
    pub fn if_absent(self) -> Self {
        self.if_version(0)
    }

    /// Present a lease's fencing token: a token older than one already used on
    /// this key is refused with [`Error::StaleToken`].
    pub fn fence(mut self, token: Token) -> Self {
        self.fence = Some(token);
        self
    }
}

/// The value of `key` with its version, or `None`.
pub fn get(key: &str) -> Result<Option<Versioned>> {
    Ok(raw::get(key)?)
}

/// A value decoded from JSON, with the version it was read at (pass that to
/// [`WriteOptions::if_version`] to write it back only if nobody else did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<T> {
    /// The decoded value.
    pub value: T,
    /// Its version: 1 after the first write, one more per write.
    pub version: u64,
}

/// The value of `key` decoded from JSON, with its version, or `None`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<Entry<T>>> {
    match get(key)? {
        None => Ok(None),
        Some(versioned) => Ok(Some(Entry {
            value: serde_json::from_str(&versioned.value)?,
            version: versioned.version,
        })),
    }
}

/// How many times [`update`] tries before giving up with the last
/// [`Error::VersionMismatch`].
pub const UPDATE_ATTEMPTS: u32 = 32;

/// Reads `key` (JSON), computes its next value with `change`, and writes it
/// only if nobody wrote in between (compare-and-swap); on a race it reads
/// again and retries, after a short random backoff, up to [`UPDATE_ATTEMPTS`]
/// times. Returns what was written, with its version.
///
/// `change` gets `None` when the key is absent (or deleted), and may run more
/// than once: keep it free of side effects.
///
/// ```no_run
/// # fn main() -> wawe_sdk::Result<()> {
/// // A counter many agents increment without losing an update.
/// let counted = wawe_sdk::values::update("hits", |n: Option<u64>| n.unwrap_or(0) + 1)?;
/// wawe_sdk::info!("hits is now {} (version {})", counted.value, counted.version);
/// # Ok(())
/// # }
/// ```
pub fn update<T, F>(key: &str, mut change: F) -> Result<Entry<T>>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (old, expected) = match get_json::<T>(key)? {
            Some(entry) => (Some(entry.value), entry.version),
            // Version 0 expects the key absent (never written, or deleted).
            None => (None, 0),
        };
        let value = change(old);
        match put_json(key, &value, WriteOptions::new().if_version(expected)) {
            Ok(version) => return Ok(Entry { value, version }),
            Err(Error::VersionMismatch { .. }) if attempt < UPDATE_ATTEMPTS => backoff(attempt),
            Err(error) => return Err(error),
        }
    }
}

/// Sleeps before retry `attempt` (1, 2, …): a random part of 1 ms doubling up
/// to 64 ms, so racing writers spread out.
fn backoff(attempt: u32) {
    use std::hash::BuildHasher;
    let ceiling_us = 1_000u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    std::thread::sleep(std::time::Duration::from_micros(random % ceiling_us + 1));
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
/// [`Error::NotFound`] when there is nothing to delete.
///
/// A deleted key keeps counting: its next write gets the next version, and
/// fencing tokens older than one used on it stay stale.
pub fn delete(key: &str, options: WriteOptions) -> Result<()> {
    Ok(raw::delete(key, options.expected_version, options.fence)?)
}
