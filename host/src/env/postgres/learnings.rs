//! Learnings in PostgreSQL: a generated `tsvector` with a GIN index;
//! `websearch_to_tsquery` never raises on user text. The top candidates by
//! `ts_rank` go to the ranking every backend shares.

use serde_json::json;
use tokio_postgres::Row;

use super::PgStore;
use crate::env::limits::{i, u};
use crate::env::store::Candidate;
use crate::env::{EnvError, EnvResult, Learning};

const COLUMNS: &str =
    "l.id, l.author, l.topic, l.body, l.tags, l.created_at, l.endorsements, l.last_endorsed_at";

fn learning(r: &Row) -> (Learning, u64) {
    let created = u(r.get(5));
    let endorsed: Option<i64> = r.get(7);
    (
        Learning {
            id: u(r.get(0)),
            author: r.get(1),
            topic: r.get(2),
            body: r.get(3),
            tags: serde_json::from_str(r.get(4)).unwrap_or_default(),
            created_at: created,
            endorsements: u(r.get(6)) as u32,
            score: 0.0,
        },
        endorsed.map(u).unwrap_or(created).max(created),
    )
}

impl PgStore {
    pub(crate) async fn record_learning(
        &self,
        agent: &str,
        topic: &str,
        body: &str,
        tags: &[String],
    ) -> EnvResult<u64> {
        let (agent, topic, body, tags_json, tag_words) = (
            agent.to_owned(),
            topic.to_owned(),
            body.to_owned(),
            json!(tags).to_string(),
            tags.join(" "),
        );
        self.write(async move |tx| {
            let row = tx
                .query_one(
                    "INSERT INTO learnings (author, topic, body, tags, tag_words, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&agent, &topic, &body, &tags_json, &tag_words, &i(tx.now)],
                )
                .await?;
            let id: i64 = row.get(0);
            tx.journal(
                &agent,
                "learning.recorded",
                &format!("learning/{id}"),
                json!({"topic": topic}),
            );
            Ok(u(id))
        })
        .await
    }

    /// The best `n` full-text matches of `terms` (any of them), before ranking.
    pub(crate) async fn search_candidates(
        &self,
        terms: &[String],
        n: u32,
    ) -> EnvResult<Vec<Candidate>> {
        // The terms hold no ASCII punctuation, so joined by "or" they read as
        // plain words OR-ed together.
        let query = terms.join(" or ");
        let sql = format!(
            "SELECT {COLUMNS}, ts_rank(l.words, q) FROM learnings l,
                    websearch_to_tsquery('learning_words', $1) q
             WHERE l.words @@ q ORDER BY ts_rank(l.words, q) DESC, l.id DESC LIMIT $2"
        );
        let rows = self.query(&sql, &[&query, &(n as i64)]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let (learning, fresh_since) = learning(r);
                Candidate {
                    learning,
                    relevance: r.get::<_, f32>(8) as f64,
                    fresh_since,
                }
            })
            .collect())
    }

    pub(crate) async fn recent_learnings(
        &self,
        topic: Option<&str>,
        limit: u32,
    ) -> EnvResult<Vec<Learning>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM learnings l WHERE ($1::text IS NULL OR l.topic = $1)
             ORDER BY l.id DESC LIMIT $2"
        );
        let rows = self.query(&sql, &[&topic, &(limit as i64)]).await?;
        Ok(rows.iter().map(|r| learning(r).0).collect())
    }

    pub(crate) async fn endorse(&self, agent: &str, id: u64) -> EnvResult<u32> {
        let agent = agent.to_owned();
        self.write(async move |tx| {
            let author = tx
                .query_opt(
                    "SELECT author FROM learnings WHERE id = $1 FOR UPDATE",
                    &[&i(id)],
                )
                .await?;
            match author.map(|r| r.get::<_, String>(0)) {
                None => return Err(EnvError::not_found(format!("learning {id} does not exist"))),
                Some(a) if a == agent => {
                    return Err(EnvError::invalid(
                        "an agent cannot endorse its own learning",
                    ));
                }
                Some(_) => {}
            }
            let added = tx
                .query(
                    "INSERT INTO learning_endorsements (learning, agent, at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING RETURNING learning",
                    &[&i(id), &agent, &i(tx.now)],
                )
                .await?;
            let row = if added.is_empty() {
                tx.query_one(
                    "SELECT endorsements FROM learnings WHERE id = $1",
                    &[&i(id)],
                )
                .await?
            } else {
                let row = tx
                    .query_one(
                        "UPDATE learnings SET endorsements = endorsements + 1, last_endorsed_at = $1
                         WHERE id = $2 RETURNING endorsements",
                        &[&i(tx.now), &i(id)],
                    )
                    .await?;
                tx.journal(
                    &agent,
                    "learning.endorsed",
                    &format!("learning/{id}"),
                    json!({}),
                );
                row
            };
            Ok(u(row.get(0)) as u32)
        })
        .await
    }
}
