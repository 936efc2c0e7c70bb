//! Learnings: recorded findings, full-text search ranked by relevance,
//! freshness and endorsements.

use rusqlite::{Connection, params};
use serde_json::json;

use super::{Env, check_name, check_payload, i, u};
use crate::env::policy::rank;
use crate::env::{AgentId, EnvError, EnvResult, Learning};

/// Candidates taken from the full-text index before re-ranking.
const CANDIDATES: u32 = 200;
/// Most words of a search that are used.
const MAX_TERMS: usize = 32;
/// The longest search text, in bytes (a piece of it with no ASCII separator
/// can hold any number of words, so the word cap alone does not bound it).
const MAX_SEARCH_BYTES: usize = 4096;

/// Most learnings one call returns.
const MAX_LIMIT: u32 = 1_000;

/// Turn free text into an FTS5 query that can only match words: the text is
/// cut at ASCII punctuation and spaces (so `AND`, `NEAR`, `*`, `:` and quotes
/// mean nothing), each piece is quoted, and the pieces are OR-ed, so documents
/// matching more of them rank higher.
///
/// Pieces are cut only where FTS5's tokenizer surely cuts too (every ASCII
/// character but letters and digits); the rest of a piece is left to that
/// tokenizer as a quoted phrase, so a piece is split exactly as the same text
/// in a stored body is (its Unicode tables differ from Rust's).
pub(crate) fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| c.is_ascii() && !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_TERMS)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

const COLUMNS: &str =
    "l.id, l.author, l.topic, l.body, l.tags, l.created_at, l.endorsements, l.last_endorsed_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Learning, u64)> {
    let tags: String = r.get(4)?;
    let created = u(r.get(5)?);
    let endorsed: Option<i64> = r.get(7)?;
    Ok((
        Learning {
            id: u(r.get(0)?),
            author: r.get(1)?,
            topic: r.get(2)?,
            body: r.get(3)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            created_at: created,
            endorsements: r.get(6)?,
            score: 0.0,
        },
        endorsed.map(u).unwrap_or(created).max(created),
    ))
}

fn search(
    conn: &Connection,
    now: u64,
    query: &str,
    limit: u32,
    half_life: u64,
) -> EnvResult<Vec<Learning>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, -bm25(learnings_fts) FROM learnings_fts f
         JOIN learnings l ON l.id = f.rowid
         WHERE learnings_fts MATCH ?1 ORDER BY bm25(learnings_fts) LIMIT ?2"
    ))?;
    let mut found = stmt
        .query_map(params![query, CANDIDATES.max(limit)], |r| {
            let (mut learning, fresh_since) = row(r)?;
            let relevance: f64 = r.get(8)?;
            learning.score = rank(
                relevance,
                learning.endorsements,
                now.saturating_sub(fresh_since),
                half_life,
            );
            Ok(learning)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    found.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.id.cmp(&a.id)));
    found.truncate(limit as usize);
    Ok(found)
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
        let tags_json = json!(tags).to_string();
        check_payload("tags", &tags_json, limits)?;
        let (agent, topic, body, tag_words) = (
            who.as_str().to_owned(),
            topic.to_owned(),
            body.to_owned(),
            tags.join(" "),
        );
        self.write(move |tx| {
            let id: i64 = tx
                .conn
                .prepare_cached(
                    "INSERT INTO learnings (author, topic, body, tags, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )?
                .query_row(params![agent, topic, body, tags_json, i(tx.now)], |r| {
                    r.get(0)
                })?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO learnings_fts (rowid, topic, body, tags) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, topic, body, tag_words])?;
            tx.journal(
                &agent,
                "learning.recorded",
                &format!("learning/{id}"),
                json!({"topic": topic}),
            )?;
            Ok(u(id))
        })
        .await
    }

    /// Up to `limit` learnings matching the words of `text`, best first.
    pub fn search_learnings(&self, text: &str, limit: u32) -> EnvResult<Vec<Learning>> {
        if text.len() > MAX_SEARCH_BYTES {
            return Err(EnvError::TooLarge {
                what: "search text".into(),
                limit: MAX_SEARCH_BYTES as u64,
                actual: text.len() as u64,
            });
        }
        let query = fts_query(text)
            .ok_or_else(|| EnvError::invalid("the search text has no words to look for"))?;
        let half_life = self.options().learning_half_life_ms;
        self.read(|conn, now| search(conn, now, &query, limit.min(MAX_LIMIT), half_life))
    }

    /// The newest `limit` learnings of `topic` (of every topic when `None`).
    pub fn recent_learnings(&self, topic: Option<&str>, limit: u32) -> EnvResult<Vec<Learning>> {
        self.read(|conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM learnings l WHERE (?1 IS NULL OR l.topic = ?1)
                 ORDER BY l.id DESC LIMIT ?2"
            ))?;
            Ok(stmt
                .query_map(params![topic, limit.min(MAX_LIMIT)], |r| {
                    row(r).map(|(l, _)| l)
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Endorse another agent's learning; returns its endorsement count.
    /// Endorsing twice counts once.
    pub async fn endorse(&self, who: &AgentId, id: u64) -> EnvResult<u32> {
        let agent = who.as_str().to_owned();
        self.write(move |tx| {
            let author: Option<String> = rusqlite::OptionalExtension::optional(
                tx.conn
                    .prepare_cached("SELECT author FROM learnings WHERE id = ?1")?
                    .query_row([i(id)], |r| r.get(0)),
            )?;
            match author {
                None => return Err(EnvError::not_found(format!("learning {id} does not exist"))),
                Some(a) if a == agent => {
                    return Err(EnvError::invalid("an agent cannot endorse its own learning"));
                }
                Some(_) => {}
            }
            let added = tx
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO learning_endorsements (learning, agent, at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![i(id), agent, i(tx.now)])?;
            if added > 0 {
                tx.conn
                    .prepare_cached(
                        "UPDATE learnings SET endorsements = endorsements + 1, last_endorsed_at = ?1
                         WHERE id = ?2",
                    )?
                    .execute(params![i(tx.now), i(id)])?;
                tx.journal(&agent, "learning.endorsed", &format!("learning/{id}"), json!({}))?;
            }
            let count: u32 = tx
                .conn
                .prepare_cached("SELECT endorsements FROM learnings WHERE id = ?1")?
                .query_row([i(id)], |r| r.get(0))?;
            Ok(count)
        })
        .await
    }
}
