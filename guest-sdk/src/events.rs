//! The journal: read the changes to the environment, or wait for the next ones.

use std::time::Duration;

use crate::bindings::wawe::env::events as raw;
use crate::{Result, millis};

pub use raw::{Event, Page};

/// Which events to return: kind prefixes (any of them) and a subject prefix.
///
/// Start from what you care about and narrow or widen it:
///
/// ```
/// use wawe_sdk::events::Filter;
///
/// // Everything that happens to one task.
/// let one_task = Filter::subject("task/42");
/// // Writes to one value (kinds `value.put` and `value.deleted`).
/// let top10 = Filter::kind("value.").and_subject("value/wc/top10");
/// // Tasks ending, in any queue.
/// let ends = Filter::kind("task.completed").or_kind("task.dead");
/// // The whole journal.
/// let all = Filter::all();
/// # let _ = (one_task, top10, ends, all);
/// ```
///
/// Prefixes match the start of the text: `task/4` also matches `task/42`; end
/// a prefix with a separator when that matters. The guide
/// (`docs/agents.md`) lists every kind with its subject and detail fields.
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

    /// Matches events whose kind starts with `prefix` (e.g. `"task."`).
    pub fn kind(prefix: impl Into<String>) -> Self {
        Self::all().or_kind(prefix)
    }

    /// Matches events whose kind starts with any of `prefixes`.
    pub fn kinds<I>(prefixes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            kinds: prefixes.into_iter().map(Into::into).collect(),
            subject_prefix: String::new(),
        }
    }

    /// Matches events (of any kind) whose subject starts with `prefix` (e.g. `"task/42"`).
    pub fn subject(prefix: impl Into<String>) -> Self {
        Self::all().and_subject(prefix)
    }

    /// Widens the filter to also match kinds starting with `prefix`.
    pub fn or_kind(mut self, prefix: impl Into<String>) -> Self {
        self.kinds.push(prefix.into());
        self
    }

    /// Narrows the filter to subjects starting with `prefix` (replacing any
    /// subject prefix given before).
    pub fn and_subject(mut self, prefix: impl Into<String>) -> Self {
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

/// Up to `limit` events after sequence number `after` that match `filter`,
/// oldest first, and where the read got to. One read looks at no more than
/// 50,000 events: with a narrow filter it may find fewer (even none) and set
/// `more`; read on from `scanned_to`.
pub fn read_page(after: u64, filter: &Filter, limit: u32) -> Result<Page> {
    Ok(raw::read(after, &filter.to_raw(), limit)?)
}

/// Up to `limit` events after sequence number `after` that match `filter`,
/// oldest first: [`read_page`] read on until `limit` events are found or the
/// journal ends (each page a bounded call into the host).
pub fn read(after: u64, filter: &Filter, limit: u32) -> Result<Vec<Event>> {
    let raw = filter.to_raw();
    let mut found = Vec::new();
    let mut after = after;
    while found.len() < limit as usize {
        let page = raw::read(after, &raw, limit - found.len() as u32)?;
        found.extend(page.events);
        if !page.more {
            break;
        }
        after = page.scanned_to;
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::Filter;

    #[test]
    fn filters_build_the_wit_record() {
        let raw = Filter::kind("value.").and_subject("value/wc/").to_raw();
        assert_eq!(raw.kinds, ["value."]);
        assert_eq!(raw.subject_prefix, "value/wc/");

        let raw = Filter::kinds(["task.completed", "task.dead"])
            .or_kind("task.cancelled")
            .to_raw();
        assert_eq!(raw.kinds, ["task.completed", "task.dead", "task.cancelled"]);
        assert_eq!(raw.subject_prefix, "");

        let raw = Filter::subject("task/42").to_raw();
        assert!(raw.kinds.is_empty());
        assert_eq!(raw.subject_prefix, "task/42");
        assert_eq!(Filter::all().to_raw().kinds.len(), 0);
    }
}
