//! Per-agent quotas on the environment: a token bucket of calls per second
//! (a flooding agent waits; nobody else does) and caps per run on writes,
//! task pushes and learnings (a run past one is stopped, with the quota
//! named as the reason, and not restarted).
//!
//! A write is a call that may change the environment, counted when it is
//! made, whatever its outcome: a claim that finds nothing counts, and so does
//! a refused one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::Limits;
use crate::env::AgentId;

/// What a call to the environment is, for the quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// Reads, waits and logging: only the rate counts them.
    Read,
    /// Changes the environment.
    Write,
    /// Pushes a task (a write).
    Push,
    /// Records a learning (a write).
    Learning,
}

/// Charges one call by agent `who` to `quota`: waits out its rate if it
/// calls too fast (saying so in the log the first time), or names the
/// per-run cap it went past.
pub(crate) async fn pay(quota: &Mutex<Quota>, call: Call, who: &AgentId) -> Result<(), String> {
    let (wait, first_throttle) = {
        let mut quota = quota.lock().expect("quota poisoned");
        let wait = quota.charge(call)?;
        let first = !wait.is_zero() && !quota.throttled;
        quota.throttled |= first;
        (wait, first)
    };
    if first_throttle {
        tracing::warn!(agent = %who, "calls the environment faster than its quota allows; throttled");
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

/// One run's use of its quotas.
pub(crate) struct Quota {
    /// Calls per second allowed (0: unlimited); also the burst.
    rate: f64,
    /// Calls that may be made now; below zero, a debt the next calls wait off.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    max_writes: Option<u64>,
    max_pushes: Option<u64>,
    max_learnings: Option<u64>,
    max_written: Option<u64>,
    /// What this run did so far.
    writes: u64,
    pushes: u64,
    learnings: u64,
    written: u64,
    /// Set once a call went past a per-run cap (the run is then stopped).
    past_cap: bool,
    /// Whether this run was throttled yet (it is logged once).
    pub(crate) throttled: bool,
}

impl Quota {
    /// A fresh run's quota under `limits`.
    pub(crate) fn new(limits: &Limits) -> Self {
        let rate = f64::from(limits.calls_per_second);
        Self {
            rate,
            tokens: rate,
            refilled: Instant::now(),
            max_writes: limits.max_writes,
            max_pushes: limits.max_pushes,
            max_learnings: limits.max_learnings,
            max_written: limits.max_written_bytes,
            writes: 0,
            pushes: 0,
            learnings: 0,
            written: 0,
            past_cap: false,
            throttled: false,
        }
    }

    /// Count a call: `Err` names the per-run quota it goes past; otherwise,
    /// how long the caller must wait first to keep to the rate.
    pub(crate) fn charge(&mut self, call: Call) -> Result<Duration, String> {
        self.charge_at(call, Instant::now())
    }

    /// Whether a call of this run went past a per-run cap (so the run must
    /// not be restarted: its counts would start over).
    pub(crate) fn past_a_cap(&self) -> bool {
        self.past_cap
    }

    /// Count `bytes` written to the workspace: `Err` names the per-run
    /// quota when this goes past it.
    pub(crate) fn charge_written(&mut self, bytes: u64) -> Result<(), String> {
        self.written = self.written.saturating_add(bytes);
        let r = over(
            self.written,
            self.max_written,
            "bytes written to the workspace",
            "max_written",
        );
        if r.is_err() {
            self.past_cap = true;
        }
        r
    }

    /// [`Quota::charge`] at the instant `now`.
    fn charge_at(&mut self, call: Call, now: Instant) -> Result<Duration, String> {
        if let Err(reason) = self.count(call) {
            self.past_cap = true;
            return Err(reason);
        }
        Ok(self.pace(now))
    }

    /// Count a call against the per-run caps.
    fn count(&mut self, call: Call) -> Result<(), String> {
        if call != Call::Read {
            self.writes += 1;
            over(self.writes, self.max_writes, "writes", "max_writes")?;
        }
        if call == Call::Push {
            self.pushes += 1;
            over(self.pushes, self.max_pushes, "task pushes", "max_pushes")?;
        }
        if call == Call::Learning {
            self.learnings += 1;
            over(
                self.learnings,
                self.max_learnings,
                "learnings recorded",
                "max_learnings",
            )?;
        }
        Ok(())
    }

    /// How long this call must wait to keep to the rate.
    fn pace(&mut self, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate) - 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.rate)
    }
}

/// `Err` when `count` is past `max`, naming the quota and its manifest `key`.
fn over(count: u64, max: Option<u64>, what: &str, key: &str) -> Result<(), String> {
    match max {
        Some(max) if count > max => Err(format!(
            "went past its quota of {max} {what} per run (a flood?); raise `{key}` in its manifest if \
             this is real work"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32) -> Limits {
        Limits {
            calls_per_second: rate,
            max_writes: Some(5),
            max_pushes: Some(2),
            max_learnings: Some(1),
            ..Limits::default()
        }
    }

    #[test]
    fn a_burst_of_one_seconds_calls_goes_through_then_calls_wait_their_turn() {
        let mut q = Quota::new(&limits(100));
        for _ in 0..100 {
            assert_eq!(q.charge(Call::Read), Ok(Duration::ZERO));
        }
        let wait = q.charge(Call::Read).unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(20),
            "{wait:?}"
        );
    }

    #[test]
    fn zero_means_no_rate_limit() {
        let mut q = Quota::new(&limits(0));
        for _ in 0..100_000 {
            assert_eq!(q.charge(Call::Read), Ok(Duration::ZERO));
        }
    }

    #[test]
    fn each_per_run_cap_stops_the_call_past_it_and_names_itself() {
        let mut q = Quota::new(&limits(0));
        q.charge(Call::Push).unwrap();
        q.charge(Call::Push).unwrap();
        let e = q.charge(Call::Push).unwrap_err();
        assert!(
            e.contains("quota of 2 task pushes") && e.contains("max_pushes"),
            "{e}"
        );
        let mut q = Quota::new(&limits(0));
        q.charge(Call::Learning).unwrap();
        assert!(
            q.charge(Call::Learning)
                .unwrap_err()
                .contains("max_learnings")
        );
        let mut q = Quota::new(&limits(0));
        for _ in 0..5 {
            q.charge(Call::Write).unwrap();
        }
        assert!(q.charge(Call::Write).unwrap_err().contains("5 writes"));
        // Reads never count against the write caps.
        let mut q = Quota::new(&limits(0));
        for _ in 0..100 {
            q.charge(Call::Read).unwrap();
        }
        q.charge(Call::Write).unwrap();
    }
}
