//! Leases on named resources, with fencing tokens, released when their guard drops.
//!
//! A resource is a `/`-separated path; a name ending in `/` (such as `src/`)
//! covers everything under it. `reserve` grants all of its resources or none.

use std::time::Duration;

use crate::bindings::wawe::env::reservations as raw;
use crate::{Result, Timestamp, Token, millis};

pub use raw::{Holding, Lease, Mode};

/// Reserves all of `resources` in `mode` for `ttl`, or none of them.
///
/// Waits up to `wait` (zero: not at all) for conflicting leases to end; a wait
/// that ends without a grant fails with [`Error::Conflict`](crate::Error::Conflict)
/// naming a current holder. The returned guard releases the lease when dropped.
/// While the agent runs, the host keeps its leases alive, so `ttl` only
/// matters once the agent is gone.
pub fn reserve<I>(resources: I, mode: Mode, ttl: Duration, wait: Duration) -> Result<LeaseGuard>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    let resources: Vec<String> = resources.into_iter().map(Into::into).collect();
    let lease = raw::reserve(&resources, mode, millis(ttl), millis(wait))?;
    Ok(LeaseGuard {
        lease,
        released: false,
    })
}

/// Every live holding (of any agent) whose resource starts with `prefix`; `""` lists all.
pub fn list(prefix: &str) -> Result<Vec<Holding>> {
    Ok(raw::list(prefix)?)
}

/// Releases a lease by id, without a guard; the environment refuses (with
/// [`Error::NotFound`](crate::Error::NotFound)) a lease that is not the caller's.
pub fn release_id(lease: u64) -> Result<()> {
    Ok(raw::release(lease)?)
}

/// A granted lease; releases it when dropped (ignoring any error then).
///
/// Call [`LeaseGuard::release`] to see the outcome of the release, or
/// [`LeaseGuard::into_lease`] to keep the lease past the guard.
#[derive(Debug)]
#[must_use = "dropping the guard releases the lease at once"]
pub struct LeaseGuard {
    lease: raw::Lease,
    released: bool,
}

impl LeaseGuard {
    /// The lease id, as the environment and its journal name it.
    pub fn id(&self) -> u64 {
        self.lease.id
    }

    /// The fencing token of this grant: present it on guarded writes
    /// (e.g. [`WriteOptions::fence`](crate::values::WriteOptions::fence)).
    pub fn token(&self) -> Token {
        self.lease.token
    }

    /// When the lease ends unless renewed, in ms since the Unix epoch (host clock).
    pub fn expires_at(&self) -> Timestamp {
        self.lease.expires_at
    }

    /// The resources granted, all of them.
    pub fn resources(&self) -> &[String] {
        &self.lease.resources
    }

    /// Whether the resources are held exclusively or shared.
    pub fn mode(&self) -> Mode {
        self.lease.mode
    }

    /// Extends the lease to `ttl` from now; returns the new expiry.
    /// Fails with [`Error::NotFound`](crate::Error::NotFound) if it already ended.
    pub fn renew(&mut self, ttl: Duration) -> Result<Timestamp> {
        self.lease = raw::renew(self.lease.id, millis(ttl))?;
        Ok(self.lease.expires_at)
    }

    /// Ends the lease now, waking anyone waiting for it, and reports the outcome.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        Ok(raw::release(self.lease.id)?)
    }

    /// Gives up the guard without releasing: the lease lives on until it is
    /// released by id, expires, or the host ends it along with the agent.
    pub fn into_lease(mut self) -> Lease {
        self.released = true;
        self.lease.clone()
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.released {
            // Nothing useful to do on failure: the lease has ended already, or
            // the host releases it when the agent ends.
            let _ = raw::release(self.lease.id);
        }
    }
}
