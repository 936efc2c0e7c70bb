//! Shared values, as every backend offers them: versioned key-value with
//! compare-and-swap and fencing.
//!
//! A deleted key keeps its row as a tombstone, so its version and fence keep
//! growing across deletes: a compare-and-swap against a version read before a
//! delete fails, and a stale fencing token stays stale.

use super::limits::{check_name, check_payload};
use super::{AgentId, Env, EnvError, EnvResult, ValueEntry, Versioned};

/// A key's stored state, as a backend reads it inside the write.
pub(crate) struct KeyState {
    /// Its last version.
    pub(crate) version: u64,
    /// The highest fencing token used on it.
    pub(crate) fence: u64,
    /// Whether it is a tombstone.
    pub(crate) deleted: bool,
}

impl KeyState {
    /// The version callers see: none while absent.
    pub(crate) fn visible(row: &Option<KeyState>) -> Option<u64> {
        row.as_ref().filter(|r| !r.deleted).map(|r| r.version)
    }
}

/// Check a fencing token against the highest ever `issued` and the key's
/// `stored` fence: it must have been issued and not be older than one already
/// used on the key. Returns the key's new highest fence.
pub(crate) fn check_fence(fence: Option<u64>, issued: u64, stored: u64) -> EnvResult<u64> {
    let Some(token) = fence else {
        return Ok(stored);
    };
    if token > issued {
        return Err(EnvError::invalid(format!(
            "fencing token {token} was never issued by this environment"
        )));
    }
    if token < stored {
        return Err(EnvError::StaleToken(token));
    }
    Ok(token)
}

/// Check a compare-and-swap expectation: `None` takes anything, `Some(0)`
/// wants the key absent, `Some(v)` wants version `v`.
pub(crate) fn check_expected(expected: Option<u64>, actual: Option<u64>) -> EnvResult<()> {
    let ok = match expected {
        None => true,
        Some(0) => actual.is_none(),
        Some(v) => actual == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(EnvError::VersionMismatch { expected, actual })
    }
}

impl Env {
    /// The value of `key` and its version, if set.
    pub async fn get_value(&self, key: &str) -> EnvResult<Option<Versioned>> {
        store!(self, s => s.get_value(key).await)
    }

    /// Write `key`; returns the new version. `expected`: `None` writes
    /// whatever is there, `Some(0)` only if absent, `Some(v)` only at version
    /// `v`. `fence`: a lease's fencing token; a token older than one already
    /// used on this key is refused as stale.
    pub async fn put_value(
        &self,
        who: &AgentId,
        key: &str,
        value: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<u64> {
        check_name("key", key, self.options())?;
        check_payload("value", value, self.options())?;
        store!(self, s => s.put_value(who.as_str(), key, value, expected, fence).await)
    }

    /// Delete `key`, under the same `expected` and `fence` rules as
    /// [`Env::put_value`]. The key's version and fence live on, so they keep
    /// growing if it is written again.
    pub async fn delete_value(
        &self,
        who: &AgentId,
        key: &str,
        expected: Option<u64>,
        fence: Option<u64>,
    ) -> EnvResult<()> {
        check_name("key", key, self.options())?;
        store!(self, s => s.delete_value(who.as_str(), key, expected, fence).await)
    }

    /// Every value whose key starts with `prefix`, by key.
    pub async fn list_values(&self, prefix: &str) -> EnvResult<Vec<ValueEntry>> {
        store!(self, s => s.list_values(prefix).await)
    }
}
