//! Learnings: what agents found out, kept for others and ranked by relevance,
//! freshness and endorsements.

use crate::Result;
use crate::bindings::wawe::env::learnings as raw;

pub use raw::Learning;

/// Records a learning under `topic` with `tags`; returns its id.
///
/// Fails with [`Error::TooLarge`](crate::Error::TooLarge) for an oversized body
/// and [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty topic.
pub fn record<I>(topic: &str, body: &str, tags: I) -> Result<u64>
where
    I: IntoIterator,
    I::Item: Into<String>,
{
    let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
    Ok(raw::record(topic, body, &tags)?)
}

/// Up to `limit` learnings matching the plain words of `text`, best first.
pub fn search(text: &str, limit: u32) -> Result<Vec<Learning>> {
    Ok(raw::search(text, limit)?)
}

/// The newest `limit` learnings of `topic`, newest first.
pub fn recent(topic: &str, limit: u32) -> Result<Vec<Learning>> {
    Ok(raw::recent(topic, limit)?)
}

/// Confirms another agent's learning; returns its endorsement count (endorsing
/// twice counts once). Endorsing one's own learning is
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
pub fn endorse(id: u64) -> Result<u32> {
    Ok(raw::endorse(id)?)
}
