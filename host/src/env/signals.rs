//! Signals, as every backend offers them: trails whose strength decays
//! exponentially with a half-life, computed when read.

use super::limits::check_name;
use super::policy::{decayed, signal_rank};
use super::{AgentId, Env, EnvError, EnvResult, TrailStrength};

/// Most trails one `strongest` returns, whatever the limit asked for.
pub const MAX_TRAILS_LISTED: u32 = 10_000;

/// A prefix with fewer trails than this is ranked by reading them all (at most
/// this many rows); a wider one is walked in rank order, per half-life.
pub(crate) const PREFIX_SCAN_ROWS: usize = 4_096;

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
    ///
    /// Bounded work: a prefix with fewer than 4,096 trails is read whole;
    /// otherwise, for each half-life in use, the index of trails by rank (see
    /// [`policy::signal_rank`](super::policy::signal_rank)) is walked from the
    /// top until `n` trails under the prefix are found.
    pub async fn strongest(&self, prefix: &str, n: u32) -> EnvResult<Vec<TrailStrength>> {
        let n = n.min(MAX_TRAILS_LISTED);
        store!(self, s => s.strongest(prefix, n).await)
    }
}

/// The smallest string above every string that starts with `prefix` (bytewise,
/// which is code point order in UTF-8), or `None` when there is none: the
/// upper end of a prefix's range scan.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A trail read for ranking, before its strength now is known.
pub(crate) struct RankedTrail {
    pub trail: String,
    pub strength: f64,
    pub half_life_ms: u64,
    pub updated_at: u64,
}

/// How far below the `n`-th candidate's rank a walk keeps reading, so that
/// trails whose ranks differ only by rounding are all weighed.
pub(crate) fn rank_slack(rank: f64) -> f64 {
    1e-9 * rank.abs().max(1.0)
}

/// The `n` strongest of `candidates` at `now`: strongest first, then the one
/// that was stronger more recently (ranks differ where strengths underflow to
/// the same 0), then by trail.
pub(crate) fn strongest_of(candidates: Vec<RankedTrail>, now: u64, n: u32) -> Vec<TrailStrength> {
    let mut all: Vec<(TrailStrength, f64)> = candidates
        .into_iter()
        .map(|c| {
            let rank = signal_rank(c.strength, c.updated_at, c.half_life_ms).unwrap_or(f64::MIN);
            let strength = decayed(c.strength, now.saturating_sub(c.updated_at), c.half_life_ms);
            let t = TrailStrength {
                trail: c.trail,
                strength,
                half_life_ms: c.half_life_ms,
            };
            (t, rank)
        })
        .collect();
    all.sort_by(|(a, ra), (b, rb)| {
        b.strength
            .total_cmp(&a.strength)
            .then(rb.total_cmp(ra))
            .then(a.trail.cmp(&b.trail))
    });
    all.truncate(n as usize);
    all.into_iter().map(|(t, _)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_range_ends_above_every_string_under_it() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for (p, s) in [("ab", "ab\u{10FFFF}\u{10FFFF}"), ("x/", "x/zzz")] {
            assert!(s.starts_with(p) && s < prefix_end(p).unwrap().as_str());
        }
    }
}
