//! Signals: pheromone trails whose strength decays with a half-life.

use std::time::Duration;

use crate::bindings::wawe::env::signals as raw;
use crate::{Result, millis};

pub use raw::TrailStrength;

/// Adds `amount` (may be negative) to `trail` after decay; returns the new strength.
/// A new trail gets the environment's default half-life.
pub fn deposit(trail: &str, amount: f64) -> Result<f64> {
    Ok(raw::deposit(trail, amount, None)?)
}

/// Like [`deposit`], and sets the trail's half-life to `half_life`.
pub fn deposit_with_half_life(trail: &str, amount: f64, half_life: Duration) -> Result<f64> {
    Ok(raw::deposit(trail, amount, Some(millis(half_life)))?)
}

/// The strength of `trail` now (0 for a trail never laid).
pub fn sense(trail: &str) -> Result<f64> {
    Ok(raw::sense(trail)?)
}

/// The `n` strongest trails starting with `prefix`, strongest first.
pub fn strongest(prefix: &str, n: u32) -> Result<Vec<TrailStrength>> {
    Ok(raw::strongest(prefix, n)?)
}
