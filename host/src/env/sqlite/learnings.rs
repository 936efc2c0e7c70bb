//! Learnings: recorded findings, full-text search ranked by relevance,
//! freshness and endorsements.

use rusqlite::{Connection, params};
use serde_json::json;

use super::SqliteStore;
use crate::env::limits::{i, u};
use crate::env::store::Candidate;
use crate::env::{EnvError, EnvResult, Learning};

/// The words of a search as an FTS5 query that can only match words: each
/// is quoted (a phrase to the tokenizer) and they are OR-ed, so documents
/// matching more of them rank higher.
pub(crate) fn fts_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
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

fn candidates(conn: &Connection, query: &str, n: u32) -> EnvResult<Vec<Candidate>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, -bm25(learnings_fts) FROM learnings_fts f
         JOIN learnings l ON l.id = f.rowid
         WHERE learnings_fts MATCH ?1 ORDER BY bm25(learnings_fts) LIMIT ?2"
    ))?;
    Ok(stmt
        .query_map(params![query, n], |r| {
            let (learning, fresh_since) = row(r)?;
            Ok(Candidate {
                learning,
                relevance: r.get(8)?,
                fresh_since,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

impl SqliteStore {
    pub(crate) async fn record_learning(
        &self,
        agent: &str,
        topic: &str,
        body: &str,
        tags: &[String],
    ) -> EnvResult<u64> {
        let tags_json = json!(tags).to_string();
        let (agent, topic, body, tag_words) = (
            agent.to_owned(),
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

    /// The best `n` full-text matches of `terms`, before ranking.
    pub(crate) async fn search_candidates(
        &self,
        terms: &[String],
        n: u32,
    ) -> EnvResult<Vec<Candidate>> {
        let query = fts_query(terms);
        self.read(move |conn, _| candidates(conn, &query, n)).await
    }

    pub(crate) async fn recent_learnings(
        &self,
        topic: Option<&str>,
        limit: u32,
    ) -> EnvResult<Vec<Learning>> {
        let topic = topic.map(str::to_owned);
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM learnings l WHERE (?1 IS NULL OR l.topic = ?1)
                 ORDER BY l.id DESC LIMIT ?2"
            ))?;
            Ok(stmt
                .query_map(params![topic, limit], |r| row(r).map(|(l, _)| l))?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(crate) async fn endorse(&self, agent: &str, id: u64) -> EnvResult<u32> {
        let agent = agent.to_owned();
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
