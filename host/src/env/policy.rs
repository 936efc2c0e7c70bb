//! The arithmetic behind decay, ranking and retry backoff, shared by every
//! backend so they all behave alike.

/// `strength` after `elapsed_ms` of exponential decay with the given half-life.
pub fn decayed(strength: f64, elapsed_ms: u64, half_life_ms: u64) -> f64 {
    strength * 0.5f64.powf(elapsed_ms as f64 / half_life_ms.max(1) as f64)
}

/// A key that orders the trails of one half-life by their strength at any
/// time, so an index on it can list the strongest without reading them all:
/// strength now is `2^(rank - now / half_life)`. `None` for strength 0.
pub fn signal_rank(strength: f64, updated_at_ms: u64, half_life_ms: u64) -> Option<f64> {
    (strength > 0.0).then(|| strength.log2() + updated_at_ms as f64 / half_life_ms.max(1) as f64)
}

/// The search rank of a learning: full-text `relevance` (higher is better),
/// times a boost of `1 + ln(1 + endorsements)`, times a freshness factor that
/// halves every `half_life_ms` since it was recorded or last endorsed.
pub fn rank(relevance: f64, endorsements: u32, age_ms: u64, half_life_ms: u64) -> f64 {
    let boost = 1.0 + (1.0 + endorsements as f64).ln();
    relevance * boost * decayed(1.0, age_ms, half_life_ms)
}

/// The delay before retrying a task that failed its `attempts`-th attempt:
/// `base` doubled per earlier attempt and capped at `max`, with "equal
/// jitter": a uniform draw from the upper half, so retries of many tasks that
/// failed together spread out.
pub fn backoff_ms(attempts: u32, base: u64, max: u64) -> u64 {
    let exp = attempts.saturating_sub(1).min(40);
    let full = base.saturating_mul(1u64 << exp).min(max);
    full / 2 + fastrand::u64(0..=full - full / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_strength_every_half_life() {
        assert_eq!(decayed(8.0, 0, 1000), 8.0);
        assert!((decayed(8.0, 1000, 1000) - 4.0).abs() < 1e-12);
        assert!((decayed(8.0, 3000, 1000) - 1.0).abs() < 1e-12);
        assert!((decayed(8.0, 500, 1000) - 8.0 / 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn backoff_doubles_per_attempt_within_jitter_bounds_and_caps() {
        for _ in 0..200 {
            let first = backoff_ms(1, 1000, 60_000);
            assert!((500..=1000).contains(&first), "{first}");
            let third = backoff_ms(3, 1000, 60_000);
            assert!((2000..=4000).contains(&third), "{third}");
            let capped = backoff_ms(30, 1000, 60_000);
            assert!((30_000..=60_000).contains(&capped), "{capped}");
        }
    }

    #[test]
    fn rank_prefers_endorsed_and_fresh_learnings() {
        let plain = rank(1.0, 0, 0, 1000);
        assert!(rank(1.0, 3, 0, 1000) > plain);
        assert!(rank(1.0, 0, 1000, 1000) < plain);
        assert!((rank(2.0, 0, 1000, 1000) - plain).abs() < 1e-12);
    }
}
