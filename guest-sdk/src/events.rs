//! The journal: read the changes to the environment, or wait for the next ones.

use std::time::Duration;

use crate::bindings::wawe::env::events as raw;
use crate::{Result, millis};

pub use raw::Event;

/// Which events to return: kind prefixes and a subject prefix; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    kinds: Vec<String>,
    subject_prefix: String,
}

impl Filter {
    /// Matches every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Also matches events whose kind starts with `prefix` (e.g. `"task."`).
    pub fn kind(mut self, prefix: impl Into<String>) -> Self {
        self.kinds.push(prefix.into());
        self
    }

    /// Also matches events whose kind starts with any of `prefixes`.
    pub fn kinds<I>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.kinds.extend(prefixes.into_iter().map(Into::into));
        self
    }

    /// Only matches events whose subject starts with `prefix` (e.g. `"task/42"`).
    pub fn subject(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Converts to the WIT record.
    fn to_raw(&self) -> raw::Filter {
        raw::Filter {
            kinds: self.kinds.clone(),
            subject_prefix: self.subject_prefix.clone(),
        }
    }
}

/// Up to `limit` events after sequence number `after` that match `filter`, oldest first.
pub fn read(after: u64, filter: &Filter, limit: u32) -> Result<Vec<Event>> {
    Ok(raw::read(after, &filter.to_raw(), limit)?)
}

/// Blocks until an event after `after` matches `filter` or `timeout` passes;
/// returns the matching events (empty on timeout). Never polls.
pub fn wait(after: u64, filter: &Filter, timeout: Duration) -> Result<Vec<Event>> {
    Ok(raw::wait(after, &filter.to_raw(), millis(timeout))?)
}

/// The sequence number of the newest event (0 for an empty journal).
///
/// Take it *before* checking a condition, then [`wait`] after it: no change
/// in between can be missed.
pub fn latest() -> Result<u64> {
    Ok(raw::latest()?)
}
