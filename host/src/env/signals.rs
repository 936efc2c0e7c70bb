//! Signals, as every backend offers them: trails whose strength decays
//! exponentially with a half-life, computed when read.

use super::limits::check_name;
use super::{AgentId, Env, EnvError, EnvResult, TrailStrength};

/// Most trails one `strongest` returns, whatever the limit asked for.
pub const MAX_TRAILS_LISTED: u32 = 10_000;

impl Env {
    /// Add `amount` to `trail` after decaying what was there (never below 0);
    /// returns the new strength. `half_life_ms` sets the trail's half-life.
    pub async fn deposit(
        &self,
        who: &AgentId,
        trail: &str,
        amount: f64,
        half_life_ms: Option<u64>,
    ) -> EnvResult<f64> {
        check_name("trail", trail, self.options())?;
        if !amount.is_finite() {
            return Err(EnvError::invalid(
                "a deposit amount must be a finite number",
            ));
        }
        if half_life_ms == Some(0) {
            return Err(EnvError::invalid("a half-life must be above 0 ms"));
        }
        store!(self, s => s.deposit(who.as_str(), trail, amount, half_life_ms).await)
    }

    /// The strength of `trail` now (0 for a trail never laid).
    pub async fn sense(&self, trail: &str) -> EnvResult<f64> {
        store!(self, s => s.sense(trail).await)
    }

    /// The `n` strongest trails starting with `prefix`, strongest first.
    pub async fn strongest(&self, prefix: &str, n: u32) -> EnvResult<Vec<TrailStrength>> {
        let n = n.min(MAX_TRAILS_LISTED);
        store!(self, s => s.strongest(prefix, n).await)
    }
}
