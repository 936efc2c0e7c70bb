//! Argument checks every backend shares: names, payloads, ttls and waits are
//! refused before any backend sees them.

use super::{EnvError, EnvOptions, EnvResult};

/// The longest any wait lasts (reserve, claim, events): an hour.
pub(crate) const MAX_WAIT_MS: u64 = 3_600_000;

/// The longest ttl of a lease or claim: a day. Longer holds are renewed.
pub(crate) const MAX_TTL_MS: u64 = 86_400_000;

/// Check a lease or claim ttl: above 0 and at most [`MAX_TTL_MS`].
pub(crate) fn check_ttl(what: &str, ttl_ms: u64) -> EnvResult<()> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(EnvError::invalid(format!(
            "a {what} needs a ttl between 1 ms and {MAX_TTL_MS} ms (a day), not {ttl_ms} ms"
        )));
    }
    Ok(())
}

/// Check a name (queue, topic, trail, key) against the length limit.
pub(crate) fn check_name(what: &str, name: &str, opts: &EnvOptions) -> EnvResult<()> {
    if name.is_empty() {
        return Err(EnvError::invalid(format!("the {what} must not be empty")));
    }
    if name.len() > opts.max_name_bytes {
        return Err(EnvError::TooLarge {
            what: what.into(),
            limit: opts.max_name_bytes as u64,
            actual: name.len() as u64,
        });
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(EnvError::invalid(format!(
            "the {what} {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Check a payload (body, value, result) against the size limit.
pub(crate) fn check_payload(what: &str, data: &str, opts: &EnvOptions) -> EnvResult<()> {
    if data.len() > opts.max_payload_bytes {
        return Err(EnvError::TooLarge {
            what: what.into(),
            limit: opts.max_payload_bytes as u64,
            actual: data.len() as u64,
        });
    }
    Ok(())
}

/// Refuse a list longer than `limit`.
pub(crate) fn check_count(what: &str, len: usize, limit: usize) -> EnvResult<()> {
    if len > limit {
        return Err(EnvError::TooLarge {
            what: what.into(),
            limit: limit as u64,
            actual: len as u64,
        });
    }
    Ok(())
}

/// Convert a stored integer to u64 (stored values are never negative).
pub(crate) fn u(v: i64) -> u64 {
    v.max(0) as u64
}

/// Convert a u64 for storage, saturating at i64::MAX.
pub(crate) fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}
