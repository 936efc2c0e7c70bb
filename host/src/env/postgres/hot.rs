//! The hot path: the pushes, claims and completes of a batch, each kind run
//! as one set-oriented statement instead of a few statements per operation.
//! With many callers, batching is the whole game on PostgreSQL: round trips
//! and statements per task, not rows, are what cost.
//!
//! Every hot operation can also run alone through the general path (the
//! same functions the other operations use), which the writer does when a
//! batch is re-run one operation per transaction, and which a complete whose
//! claim did not match takes to find out why (a stale token, an unknown task).

use std::future::Future;
use std::pin::Pin;

use crate::env::events;
use tokio::sync::oneshot;

use super::writer::{Batchable, Job};
use super::{PgTx, tasks};
use crate::env::limits::{i, u};
use crate::env::{Claimed, EnvError, EnvResult, PushOptions, Pushed, TaskState};

/// A hot operation's arguments and, once run, its outcome.
pub(crate) enum Hot {
    /// A push without dependencies or dedupe key.
    Push {
        agent: String,
        queue: String,
        payload: String,
        opts: PushOptions,
        reply: Option<oneshot::Sender<EnvResult<Pushed>>>,
        out: Option<EnvResult<Pushed>>,
    },
    /// One attempt to claim.
    Claim {
        agent: String,
        queue: String,
        lease_ms: u64,
        reply: Option<oneshot::Sender<EnvResult<Option<Claimed>>>>,
        out: Option<EnvResult<Option<Claimed>>>,
    },
    /// A guarded complete.
    Complete {
        agent: String,
        id: u64,
        token: u64,
        result: String,
        reply: Option<oneshot::Sender<EnvResult<()>>>,
        out: Option<EnvResult<()>>,
    },
}

/// Whether a push can take the hot path.
pub(crate) fn push_is_hot(opts: &PushOptions) -> bool {
    opts.depends_on.is_empty() && opts.dedupe_key.is_none()
}

impl Hot {
    pub(crate) fn push(
        agent: &str,
        queue: &str,
        payload: &str,
        opts: PushOptions,
    ) -> (Batchable, oneshot::Receiver<EnvResult<Pushed>>) {
        let (reply, rx) = oneshot::channel();
        let hot = Hot::Push {
            agent: agent.to_owned(),
            queue: queue.to_owned(),
            payload: payload.to_owned(),
            opts,
            reply: Some(reply),
            out: None,
        };
        (Box::new(hot), rx)
    }

    pub(crate) fn claim(
        agent: &str,
        queue: &str,
        lease_ms: u64,
    ) -> (Batchable, oneshot::Receiver<EnvResult<Option<Claimed>>>) {
        let (reply, rx) = oneshot::channel();
        let hot = Hot::Claim {
            agent: agent.to_owned(),
            queue: queue.to_owned(),
            lease_ms,
            reply: Some(reply),
            out: None,
        };
        (Box::new(hot), rx)
    }

    pub(crate) fn complete(
        agent: &str,
        id: u64,
        token: u64,
        result: &str,
    ) -> (Batchable, oneshot::Receiver<EnvResult<()>>) {
        let (reply, rx) = oneshot::channel();
        let hot = Hot::Complete {
            agent: agent.to_owned(),
            id,
            token,
            result: result.to_owned(),
            reply: Some(reply),
            out: None,
        };
        (Box::new(hot), rx)
    }

    fn done(&self) -> bool {
        match self {
            Hot::Push { out, .. } => out.is_some(),
            Hot::Claim { out, .. } => out.is_some(),
            Hot::Complete { out, .. } => out.is_some(),
        }
    }
}

impl Job for Hot {
    fn locks(&self) -> &[i32] {
        &[]
    }

    fn hot(&mut self) -> Option<&mut Hot> {
        Some(self)
    }

    fn run<'a>(&'a mut self, tx: &'a mut PgTx<'_>) -> Pin<Box<dyn Future<Output = bool> + 'a>> {
        Box::pin(async move {
            match self {
                Hot::Push {
                    agent,
                    queue,
                    payload,
                    opts,
                    out,
                    ..
                } => {
                    let r = tasks::push(tx, agent, queue, payload, opts).await;
                    let ok = r.is_ok();
                    *out = Some(r);
                    ok
                }
                Hot::Claim {
                    agent,
                    queue,
                    lease_ms,
                    out,
                    ..
                } => {
                    let r = tasks::claim(tx, agent, queue, *lease_ms).await;
                    let ok = r.is_ok();
                    *out = Some(r);
                    ok
                }
                Hot::Complete {
                    agent,
                    id,
                    token,
                    result,
                    out,
                    ..
                } => {
                    let r = tasks::complete(tx, agent, *id, *token, result).await;
                    let ok = r.is_ok();
                    *out = Some(r);
                    ok
                }
            }
        })
    }

    fn finish(mut self: Box<Self>, commit: EnvResult<()>) {
        fn answer<T>(
            reply: &mut Option<oneshot::Sender<EnvResult<T>>>,
            out: &mut Option<EnvResult<T>>,
            commit: EnvResult<()>,
        ) {
            let answer = match (out.take(), commit) {
                (_, Err(e)) => Err(e),
                (Some(r), Ok(())) => r,
                (None, Ok(())) => Err(EnvError::Unavailable("the operation did not run".into())),
            };
            if let Some(reply) = reply.take() {
                let _ = reply.send(answer);
            }
        }
        match &mut *self {
            Hot::Push { reply, out, .. } => answer(reply, out, commit),
            Hot::Claim { reply, out, .. } => answer(reply, out, commit),
            Hot::Complete { reply, out, .. } => answer(reply, out, commit),
        }
    }
}

/// Run every hot operation of `jobs` set-wise, their statements sent
/// together in one round trip: lapsed claims of the claimed queues found,
/// pushes, completes (whose dependents may become ready), then claims. Each
/// statement sees what the ones before it did. Completes whose claim did not
/// match, and lapsed claims, are then handled one by one.
pub(crate) async fn run_all(tx: &mut PgTx<'_>, jobs: &mut [Batchable]) -> EnvResult<()> {
    let mut hot: Vec<&mut Hot> = jobs.iter_mut().filter_map(|j| j.hot()).collect();
    if hot.is_empty() {
        return Ok(());
    }
    let now = i(tx.now);
    let pushes = Pushes::of(tx, &hot);
    let completes = Completes::of(&hot);
    let claims = Claims::of(tx, &hot);
    let (client, lapsed_sql) = tx.prepare(tasks::LAPSED).await?;
    let push_sql = tx.prepare(PUSH).await?.1;
    let complete_sql = tx.prepare(COMPLETE).await?.1;
    let claim_sql = tx.prepare(CLAIM).await?.1;
    let queues = claims.distinct_queues();
    let skip = || async { Ok(Vec::new()) };
    let (lapsed, pushed, completed, claimed) = futures_util::future::join4(
        async {
            match queues.is_empty() {
                true => skip().await,
                false => client.query(&lapsed_sql, &[&now, &queues]).await,
            }
        },
        async {
            match pushes.queues.is_empty() {
                true => skip().await,
                false => {
                    let p = &pushes;
                    client
                        .query(
                            &push_sql,
                            &[
                                &p.queues,
                                &p.payloads,
                                &p.priorities,
                                &p.max_attempts,
                                &p.not_before,
                                &now,
                            ],
                        )
                        .await
                }
            }
        },
        async {
            match completes.ids.is_empty() {
                true => skip().await,
                false => {
                    let c = &completes;
                    client
                        .query(
                            &complete_sql,
                            &[&c.ids, &c.agents, &c.tokens, &c.results, &c.ns, &now],
                        )
                        .await
                }
            }
        },
        async {
            match claims.queues.is_empty() {
                true => skip().await,
                false => {
                    let c = &claims;
                    client
                        .query(&claim_sql, &[&c.queues, &c.agents, &c.expires, &c.ns, &now])
                        .await
                }
            }
        },
    )
    .await;
    let mut rows = |r: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>| match r {
        Ok(rows) => Ok(rows),
        Err(e) => Err(tx.fail(e)),
    };
    let (lapsed, pushed, completed, claimed) = (
        rows(lapsed)?,
        rows(pushed)?,
        rows(completed)?,
        rows(claimed)?,
    );
    pushes.finish(tx, &mut hot, &pushed)?;
    completes.finish(tx, &mut hot, &completed).await;
    tasks::requeue_lapsed(tx, &lapsed).await?;
    claims.finish(tx, &mut hot, &claimed);
    if !lapsed.is_empty() {
        // Tasks just put back may be claimable now: the claims that found
        // nothing look again, one by one.
        for h in hot.iter_mut() {
            if let Hot::Claim {
                out: out @ Some(Ok(None)),
                ..
            } = &mut **h
            {
                *out = None;
                h.run(tx).await;
            }
        }
    }
    Ok(())
}

/// Insert the pushes; rows are inserted, and returned, in the order given.
const PUSH: &str = "INSERT INTO tasks (queue, payload, state, priority, max_attempts, not_before,
                        created_at, updated_at)
     SELECT q, p, 'ready', pr, ma, nb, $6, $6
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
          WITH ORDINALITY AS r (q, p, pr, ma, nb, n)
     ORDER BY n
     RETURNING id";

/// Finish every matching claim, count them off their blocked dependents,
/// and make ready those with nothing left to wait for.
const COMPLETE: &str = "WITH req AS (
         SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::int8[])
             AS r (id, agent, token, result, n)
     ), done AS (
         UPDATE tasks t SET state = 'done', result = r.result, claimed_by = NULL,
             claim_token = NULL, claim_expires = NULL, updated_at = $6
         FROM req r
         WHERE t.id = r.id AND t.state = 'claimed' AND t.claimed_by = r.agent
           AND t.claim_token = r.token AND t.claim_expires > $6
         RETURNING r.n, t.id
     ), counts AS (
         SELECT d.task, count(*) AS k, max(d.depends_on) AS last
         FROM task_deps d JOIN done ON d.depends_on = done.id GROUP BY d.task
     ), ready AS (
         UPDATE tasks t SET pending_deps = t.pending_deps - c.k,
             state = CASE WHEN t.pending_deps <= c.k THEN 'ready' ELSE t.state END,
             updated_at = CASE WHEN t.pending_deps <= c.k THEN $6 ELSE t.updated_at END
         FROM counts c WHERE t.id = c.task AND t.state = 'blocked'
         RETURNING t.id, t.state, c.last, t.queue
     )
     SELECT false, n, id, NULL::text FROM done
     UNION ALL
     SELECT true, last, id, queue FROM ready WHERE state = 'ready'";

/// Per queue, the best ready tasks (as many as there are claimers of it,
/// skipping rows other transactions hold), matched to the claimers in the
/// order they came.
const CLAIM: &str = "WITH req AS (
         SELECT r.*, row_number() OVER (PARTITION BY r.queue ORDER BY r.n) AS rank
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[])
             AS r (queue, agent, expires, n)
     ), wanted AS (
         SELECT queue, count(*) AS k FROM req GROUP BY queue
     ), picked AS (
         SELECT t.id, t.queue,
                row_number() OVER (PARTITION BY t.queue ORDER BY t.priority DESC, t.id) AS rank
         FROM wanted w CROSS JOIN LATERAL (
             SELECT id, queue, priority FROM tasks
             WHERE state = 'ready' AND queue = w.queue AND not_before <= $5
             ORDER BY priority DESC, id LIMIT w.k
             FOR UPDATE SKIP LOCKED) t
     ), matched AS (
         SELECT p.id, r.agent, r.expires, r.n
         FROM picked p JOIN req r ON r.queue = p.queue AND r.rank = p.rank
     )
     UPDATE tasks t SET state = 'claimed', attempts = t.attempts + 1,
         claimed_by = m.agent, claim_token = nextval('fence'),
         claim_expires = m.expires, updated_at = $5
     FROM matched m WHERE t.id = m.id
     RETURNING m.n, t.id, t.payload, t.attempts, t.claim_token, t.claim_expires";

/// The pushes of a batch, as statement parameters.
struct Pushes {
    queues: Vec<String>,
    payloads: Vec<String>,
    priorities: Vec<i64>,
    max_attempts: Vec<i64>,
    not_before: Vec<i64>,
}

impl Pushes {
    fn of(tx: &PgTx<'_>, hot: &[&mut Hot]) -> Pushes {
        let mut p = Pushes {
            queues: Vec::new(),
            payloads: Vec::new(),
            priorities: Vec::new(),
            max_attempts: Vec::new(),
            not_before: Vec::new(),
        };
        for h in hot {
            if let Hot::Push {
                queue,
                payload,
                opts,
                ..
            } = &**h
            {
                p.queues.push(queue.clone());
                p.payloads.push(payload.clone());
                p.priorities.push(opts.priority as i64);
                p.max_attempts.push(match opts.max_attempts {
                    0 => tx.opts.default_max_attempts as i64,
                    n => n as i64,
                });
                p.not_before.push(i(tx.now.saturating_add(opts.delay_ms)));
            }
        }
        p
    }

    fn finish(
        &self,
        tx: &mut PgTx<'_>,
        hot: &mut [&mut Hot],
        rows: &[tokio_postgres::Row],
    ) -> EnvResult<()> {
        let mut ids = rows.iter().map(|r| u(r.get(0)));
        for h in hot.iter_mut() {
            let Hot::Push {
                agent,
                queue,
                opts,
                out,
                ..
            } = &mut **h
            else {
                continue;
            };
            let id = ids.next().ok_or_else(|| {
                EnvError::Unavailable("the database inserted fewer tasks than asked".into())
            })?;
            tx.record(
                agent,
                events::task_pushed(
                    id,
                    queue,
                    TaskState::Ready,
                    opts.priority,
                    tx.now.saturating_add(opts.delay_ms),
                    &[],
                ),
            );
            *out = Some(Ok(Pushed {
                id,
                deduplicated: false,
            }));
        }
        Ok(())
    }
}

/// The completes of a batch, as statement parameters.
struct Completes {
    ids: Vec<i64>,
    agents: Vec<String>,
    tokens: Vec<i64>,
    results: Vec<String>,
    /// Each one's place among the batch's hot operations.
    ns: Vec<i64>,
}

impl Completes {
    fn of(hot: &[&mut Hot]) -> Completes {
        let mut c = Completes {
            ids: Vec::new(),
            agents: Vec::new(),
            tokens: Vec::new(),
            results: Vec::new(),
            ns: Vec::new(),
        };
        for (n, h) in hot.iter().enumerate() {
            if let Hot::Complete {
                agent,
                id,
                token,
                result,
                ..
            } = &**h
            {
                c.ids.push(i(*id));
                c.agents.push(agent.clone());
                c.tokens.push(i(*token));
                c.results.push(result.clone());
                c.ns.push(n as i64);
            }
        }
        c
    }

    async fn finish(&self, tx: &mut PgTx<'_>, hot: &mut [&mut Hot], rows: &[tokio_postgres::Row]) {
        let mut finished: Vec<usize> = Vec::new();
        let mut ready: Vec<(u64, u64, String)> = Vec::new();
        for r in rows {
            if r.get::<_, bool>(0) {
                ready.push((u(r.get(2)), u(r.get(1)), r.get(3)));
            } else {
                finished.push(r.get::<_, i64>(1) as usize);
            }
        }
        finished.sort_unstable();
        for n in finished {
            if let Hot::Complete {
                agent,
                id,
                token,
                out,
                ..
            } = &mut *hot[n]
            {
                tx.record(agent, events::task_completed(id, *token));
                *out = Some(Ok(()));
            }
        }
        ready.sort_unstable();
        for (id, after, queue) in ready {
            tx.record("env", events::task_ready(id, &queue, after));
        }
        // The rest did not match: their general path says why.
        for h in hot.iter_mut() {
            if matches!(&**h, Hot::Complete { .. }) && !h.done() {
                h.run(tx).await;
            }
        }
    }
}

/// The claims of a batch, as statement parameters.
struct Claims {
    queues: Vec<String>,
    agents: Vec<String>,
    expires: Vec<i64>,
    /// Each one's place among the batch's hot operations.
    ns: Vec<i64>,
}

impl Claims {
    fn of(tx: &PgTx<'_>, hot: &[&mut Hot]) -> Claims {
        let mut c = Claims {
            queues: Vec::new(),
            agents: Vec::new(),
            expires: Vec::new(),
            ns: Vec::new(),
        };
        for (n, h) in hot.iter().enumerate() {
            if let Hot::Claim {
                agent,
                queue,
                lease_ms,
                ..
            } = &**h
            {
                c.queues.push(queue.clone());
                c.agents.push(agent.clone());
                c.expires.push(i(tx.now.saturating_add(*lease_ms)));
                c.ns.push(n as i64);
            }
        }
        c
    }

    fn distinct_queues(&self) -> Vec<String> {
        let mut q = self.queues.clone();
        q.sort_unstable();
        q.dedup();
        q
    }

    fn finish(&self, tx: &mut PgTx<'_>, hot: &mut [&mut Hot], rows: &[tokio_postgres::Row]) {
        let mut claimed: Vec<(usize, Claimed)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as usize,
                    Claimed {
                        id: u(r.get(1)),
                        queue: String::new(),
                        payload: r.get(2),
                        attempt: u(r.get(3)) as u32,
                        token: u(r.get(4)),
                        lease_expires_at: u(r.get(5)),
                    },
                )
            })
            .collect();
        claimed.sort_by_key(|(n, _)| *n);
        let mut claimed = claimed.into_iter().peekable();
        for (n, h) in hot.iter_mut().enumerate() {
            let Hot::Claim {
                agent, queue, out, ..
            } = &mut **h
            else {
                continue;
            };
            let got = match claimed.peek() {
                Some((m, _)) if *m == n => claimed.next().map(|(_, c)| c),
                _ => None,
            };
            if let Some(c) = &got {
                tx.record(
                    agent,
                    events::task_claimed(c.id, queue, c.attempt, c.token, c.lease_expires_at),
                );
            }
            *out = Some(Ok(got.map(|c| Claimed {
                queue: queue.clone(),
                ..c
            })));
        }
    }
}
