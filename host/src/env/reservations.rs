//! Reservations, as every backend offers them: leases on resource paths,
//! granted all-or-none, first come first served among waiters, with fencing
//! tokens.

use tokio::time::Instant;

use super::limits::{MAX_WAIT_MS, check_count, check_ttl};
use super::resource::{covering_dirs, dir_range_end, overlaps, validate_resource};
use super::store::Attempt;
use super::wake::Interest;
use super::{AgentId, Env, EnvError, EnvResult, Holding, Lease, Mode};

/// A caller's place in the reservation queue; leaving it (a grant, a timeout,
/// an error, or the caller's future being dropped) removes it so nobody
/// queues behind a waiter that is gone.
struct QueuePlace<'a> {
    env: &'a Env,
    agent: &'a AgentId,
    waiter: Option<u64>,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            // Fire and forget: the writer removes the entry in its next batch.
            store!(self.env, s => s.leave_queue(self.agent.as_str(), waiter));
        }
    }
}

/// Most holdings one `list` returns.
pub const MAX_HOLDINGS_LISTED: u32 = 10_000;

impl Env {
    /// Reserve all of `resources` in `mode` for `ttl_ms`, or none of them,
    /// waiting up to `wait_ms` for conflicts to clear (first come, first served).
    ///
    /// Fails with [`EnvError::Conflict`] naming a holder in the way when the
    /// wait ends without a grant.
    pub async fn reserve(
        &self,
        who: &AgentId,
        resources: &[String],
        mode: Mode,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> EnvResult<Lease> {
        let opts = self.options();
        if resources.is_empty() {
            return Err(EnvError::invalid("reserve needs at least one resource"));
        }
        check_count("resource list", resources.len(), opts.max_resources)?;
        check_ttl("lease", ttl_ms)?;
        for r in resources {
            validate_resource(r, opts.max_name_bytes)?;
        }
        let mut wanted = resources.to_vec();
        wanted.sort();
        wanted.dedup();

        let wait_ms = wait_ms.min(MAX_WAIT_MS);
        let until = Env::wait_until(wait_ms);
        let queue_until = (wait_ms > 0).then(|| self.now_ms().saturating_add(wait_ms));
        let mut place = QueuePlace {
            env: self,
            agent: who,
            waiter: None,
        };
        // Registered before the first attempt, so that a release landing
        // after it still wakes this reserve.
        let waiter =
            (wait_ms > 0).then(|| self.wakes().register(Interest::Resources(wanted.clone())));
        loop {
            if let Some(w) = &waiter {
                w.settle();
            }
            let attempt = store!(self, s => s
                .reserve_once(who.as_str(), &wanted, mode, ttl_ms, place.waiter, queue_until)
                .await)?;
            let (conflict, retry_at) = match attempt {
                Attempt::Granted(lease) => {
                    place.waiter = None; // the grant removed it
                    return Ok(lease);
                }
                Attempt::Blocked {
                    conflict,
                    waiter,
                    retry_at,
                } => {
                    place.waiter = waiter;
                    (conflict, retry_at)
                }
            };
            if Instant::now() >= until {
                // Leave the line before answering, so a caller who asks next
                // (on any writer connection) is not queued behind a waiter
                // that gave up. Should that fail, `Drop` tries again.
                if let Some(waiter) = place.waiter {
                    let left = store!(self, s => s.leave_queue_now(who.as_str(), waiter).await);
                    if left.is_ok() {
                        place.waiter = None;
                    }
                }
                return Err(conflict);
            }
            let wake = retry_at.map_or(until, |at| self.instant_at(at).min(until));
            if let Some(w) = &waiter {
                w.woken_before(wake).await;
            }
        }
    }

    /// Extend one of the caller's live leases to `ttl_ms` from now.
    pub async fn renew(&self, who: &AgentId, lease: u64, ttl_ms: u64) -> EnvResult<Lease> {
        check_ttl("lease", ttl_ms)?;
        store!(self, s => s.renew(who.as_str(), lease, ttl_ms).await)
    }

    /// End one of the caller's live leases now.
    pub async fn release(&self, who: &AgentId, lease: u64) -> EnvResult<()> {
        store!(self, s => s.release(who.as_str(), lease).await)
    }

    /// The live holdings whose resource starts with `prefix`, by resource:
    /// the first [`MAX_HOLDINGS_LISTED`] (`holdings_page` pages on).
    pub async fn list_reservations(&self, prefix: &str) -> EnvResult<Vec<Holding>> {
        store!(self, s => s.holdings_page(prefix, None, None, MAX_HOLDINGS_LISTED).await)
    }
}

/// Whether a lease held in `held` mode stands in the way of one wanted in `wanted` mode.
pub(crate) fn conflicts(held: Mode, wanted: Mode) -> bool {
    held == Mode::Exclusive || wanted == Mode::Exclusive
}

/// Where a backend looks for leases that may overlap `wanted`: the exact
/// names (its covering directories, itself, and a directory's plain name),
/// and for a directory the range `[wanted, end)` of every name under it.
pub(crate) fn lookups(wanted: &str) -> (Vec<String>, Option<(String, String)>) {
    let mut names = covering_dirs(wanted);
    names.push(wanted.to_owned());
    if let Some(base) = wanted.strip_suffix('/') {
        names.push(base.to_owned());
    }
    names.sort();
    names.dedup();
    let range = wanted
        .ends_with('/')
        .then(|| (wanted.to_owned(), dir_range_end(wanted)));
    (names, range)
}

/// The first conflicting lease a backend's lookups found, and the earliest
/// expiry among all of them (when a blocked request is worth trying again).
#[derive(Default)]
pub(crate) struct FirstConflict(Option<(EnvError, u64)>);

impl FirstConflict {
    /// Consider a live lease of someone else on `resource`, found for a
    /// request in `wanted` mode.
    pub(crate) fn consider(
        &mut self,
        resource: String,
        holder: String,
        held: Mode,
        expires_at: u64,
        wanted: Mode,
    ) {
        if !conflicts(held, wanted) {
            return;
        }
        match &mut self.0 {
            Some((_, earliest)) => *earliest = (*earliest).min(expires_at),
            None => {
                self.0 = Some((
                    EnvError::Conflict {
                        holder,
                        resource,
                        expires_at,
                    },
                    expires_at,
                ))
            }
        }
    }

    pub(crate) fn found(self) -> Option<(EnvError, u64)> {
        self.0
    }
}

/// Whether a waiter queued ahead (for `theirs` in `queued` mode) goes first:
/// its request overlaps `resources` in a conflicting mode, and it is not itself
/// blocked by one of the requester's own holdings (`own`), which would make
/// the requester wait for a waiter that waits for it. Returns the clashing
/// resource.
pub(crate) fn waiter_goes_first<'t>(
    theirs: &'t [String],
    queued: Mode,
    resources: &[String],
    mode: Mode,
    own: &[(String, Mode)],
) -> Option<&'t String> {
    if !conflicts(queued, mode) {
        return None;
    }
    let clash = theirs
        .iter()
        .find(|t| resources.iter().any(|w| overlaps(t, w)))?;
    let blocked_by_requester = own.iter().any(|(held, held_mode)| {
        conflicts(*held_mode, queued) && theirs.iter().any(|t| overlaps(held, t))
    });
    (!blocked_by_requester).then_some(clash)
}

/// The advisory lock keys a reservation of `resources` takes: one per
/// distinct first path segment (overlapping paths always share theirs).
pub(crate) fn first_segments(resources: &[String]) -> Vec<&str> {
    let mut segments: Vec<&str> = resources
        .iter()
        .map(|r| r.split('/').next().unwrap_or(r))
        .collect();
    segments.sort_unstable();
    segments.dedup();
    segments
}

/// The refusal of a lease to an agent recorded as ended (`state`): a host
/// cut off from the environment may send a reserve that arrives after others
/// reaped it, and a lease granted then would block others for its ttl.
pub(crate) fn ended_agent(agent: &str, state: &str) -> EnvError {
    EnvError::not_found(format!(
        "agent {agent} is recorded as {state}, not running: it may not take leases"
    ))
}
