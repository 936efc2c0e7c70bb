//! Learnings, as every backend offers them: recorded findings, full-text
//! search ranked by one rule (relevance, endorsements, freshness), recent
//! ones by topic, endorsements.

use serde_json::json;

use super::limits::{check_name, check_payload};
use super::policy::rank;
use super::{AgentId, Env, EnvError, EnvResult, Learning};

/// Candidates taken from the full-text index before re-ranking.
pub(crate) const CANDIDATES: u32 = 200;
/// Most words of a search that are used.
const MAX_TERMS: usize = 32;
/// The longest search text, in bytes (a piece of it with no ASCII separator
/// can hold any number of words, so the word cap alone does not bound it).
const MAX_SEARCH_BYTES: usize = 4096;
/// Most learnings one call returns, whatever the limit asked for.
pub const MAX_LEARNINGS_LISTED: u32 = 1_000;

/// The words of a search: `text` cut at ASCII punctuation and spaces only, so
/// no query syntax survives (`AND`, `NEAR`, `*`, `:`, quotes, `-`); the rest
/// of each piece is left to the backend's tokenizer, which splits it exactly
/// as it splits the same text in a stored body.
pub(crate) fn search_terms(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_TERMS)
        .map(str::to_owned)
        .collect()
}

impl Env {
    /// Record a learning under `topic`; returns its id.
    pub async fn record_learning(
        &self,
        who: &AgentId,
        topic: &str,
        body: &str,
        tags: &[String],
    ) -> EnvResult<u64> {
        let limits = self.options();
        check_name("topic", topic, limits)?;
        check_payload("body", body, limits)?;
        for t in tags {
            check_name("tag", t, limits)?;
        }
        check_payload("tags", &json!(tags).to_string(), limits)?;
        store!(self, s => s.record_learning(who.as_str(), topic, body, tags).await)
    }

    /// Up to `limit` learnings matching the words of `text`, best first: the
    /// backend's full-text relevance times `1 + ln(1 + endorsements)` times a
    /// freshness that halves every `learning_half_life_ms`.
    pub async fn search_learnings(&self, text: &str, limit: u32) -> EnvResult<Vec<Learning>> {
        if text.len() > MAX_SEARCH_BYTES {
            return Err(EnvError::TooLarge {
                what: "search text".into(),
                limit: MAX_SEARCH_BYTES as u64,
                actual: text.len() as u64,
            });
        }
        let terms = search_terms(text);
        if terms.is_empty() {
            return Err(EnvError::invalid(
                "the search text has no words to look for",
            ));
        }
        let limit = limit.min(MAX_LEARNINGS_LISTED);
        let candidates =
            store!(self, s => s.search_candidates(&terms, CANDIDATES.max(limit)).await)?;
        let (now, half_life) = (self.now_ms(), self.options().learning_half_life_ms);
        let mut found: Vec<Learning> = candidates
            .into_iter()
            .map(|c| {
                let mut l = c.learning;
                l.score = rank(
                    c.relevance,
                    l.endorsements,
                    now.saturating_sub(c.fresh_since),
                    half_life,
                );
                l
            })
            .collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
        found.truncate(limit as usize);
        Ok(found)
    }

    /// The newest `limit` learnings of `topic` (of every topic when `None`).
    pub async fn recent_learnings(
        &self,
        topic: Option<&str>,
        limit: u32,
    ) -> EnvResult<Vec<Learning>> {
        let limit = limit.min(MAX_LEARNINGS_LISTED);
        store!(self, s => s.recent_learnings(topic, limit).await)
    }

    /// Endorse another agent's learning; returns its endorsement count.
    /// Endorsing twice counts once.
    pub async fn endorse(&self, who: &AgentId, id: u64) -> EnvResult<u32> {
        store!(self, s => s.endorse(who.as_str(), id).await)
    }
}
