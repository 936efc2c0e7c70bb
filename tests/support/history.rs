//! A checker over an environment's history: the journal (every change, in
//! commit order, with who made it and the tokens involved) against the
//! tables it should have produced. What it checks is what wawe promises:
//! nothing lost, nothing done twice, no stale token accepted, no conflicting
//! leases at once, nothing left held by the dead, and a sound file.

use super::block;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;
use wawe::env::{Env, Event, EventFilter, Mode, TaskState, overlaps};

/// What the history held, for the report.
#[derive(Debug, Default)]
pub struct Summary {
    /// Tasks pushed.
    pub tasks: usize,
    /// Tasks done at the end.
    pub done: usize,
    /// Tasks dead at the end (attempts used up).
    pub dead: usize,
    /// Tasks cancelled at the end (a dependency died).
    pub cancelled: usize,
    /// Claims made (attempts).
    pub claims: usize,
    /// Claims that ended without a completion (crash, stop, lapse, failure).
    pub claims_lost: usize,
    /// Leases granted.
    pub leases: usize,
    /// Agent runs that ended crashed.
    pub crashes: usize,
    /// Hosts recorded lost (reaped after going silent).
    pub hosts_lost: usize,
    /// Events read.
    pub events: usize,
}

/// Every event, oldest first.
fn all_events(env: &Env) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = block(env.read_events(after, &EventFilter::default(), 10_000)).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page);
    }
    out
}

fn detail(e: &Event) -> Value {
    serde_json::from_str(&e.detail).unwrap_or_else(|err| panic!("event {e:?}: {err}"))
}

fn id_of(subject: &str, prefix: &str) -> u64 {
    subject
        .strip_prefix(prefix)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("subject {subject:?} is not {prefix}<id>"))
}

/// A live lease as the journal tells it: live from its grant to its end
/// (released or expired). The environment ends expired leases, journaled,
/// before it grants anything, so expiry times need not be read (keepalive
/// extends them without an event).
#[derive(Debug, Clone)]
struct LiveLease {
    agent: String,
    resources: Vec<String>,
    mode: Mode,
}

/// Run every check over the environment at `db`; panics naming the first
/// broken promise. Call it once the swarm has finished.
pub fn check(db: &Path) -> Summary {
    let env = Env::open_existing(db, wawe::env::EnvOptions::default()).unwrap();
    let events = all_events(&env);
    let mut sum = Summary {
        events: events.len(),
        ..Summary::default()
    };
    let mut seqs = events.iter().map(|e| e.seq);
    assert!(
        seqs.clone().zip(seqs.by_ref().skip(1)).all(|(a, b)| a < b),
        "journal sequence numbers are not increasing"
    );

    // Tasks: the state each task's events lead to, the claim each
    // completion must match, and how often each completed.
    let mut state: BTreeMap<u64, TaskState> = BTreeMap::new();
    let mut deps: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut holder: HashMap<u64, (String, u64)> = HashMap::new();
    let mut completions: HashMap<u64, u32> = HashMap::new();
    // Leases: the live set, replayed, with every grant checked against it.
    let mut live: BTreeMap<u64, LiveLease> = BTreeMap::new();
    for e in &events {
        if let Some(kind) = e.kind.strip_prefix("task.") {
            let id = id_of(&e.subject, "task/");
            let d = detail(e);
            let next = match kind {
                "pushed" => {
                    sum.tasks += 1;
                    deps.insert(id, serde_json::from_value(d["depends_on"].clone()).unwrap());
                    TaskState::parse(d["state"].as_str().unwrap()).unwrap()
                }
                "claimed" => {
                    sum.claims += 1;
                    let token = d["token"].as_u64().unwrap();
                    assert_eq!(
                        state.get(&id),
                        Some(&TaskState::Ready),
                        "task {id} claimed while not ready (event {})",
                        e.seq
                    );
                    holder.insert(id, (e.agent.clone(), token));
                    TaskState::Claimed
                }
                "completed" => {
                    let token = d["token"].as_u64().unwrap();
                    let held = holder.remove(&id);
                    assert_eq!(
                        held,
                        Some((e.agent.clone(), token)),
                        "task {id} completed by {} with token {token}, but the live claim was {held:?} (event {})",
                        e.agent,
                        e.seq
                    );
                    *completions.entry(id).or_default() += 1;
                    TaskState::Done
                }
                "retried" | "returned" | "dead" => {
                    if let Some((by, _)) = holder.remove(&id) {
                        sum.claims_lost += 1;
                        // A failure is reported by the holder; the host
                        // ("env", or the agent's own end) does the rest.
                        assert!(
                            e.agent == "env" || e.agent == by,
                            "task {id} {kind} by {}, but {by} held it (event {})",
                            e.agent,
                            e.seq
                        );
                    }
                    if kind == "dead" {
                        TaskState::Dead
                    } else {
                        TaskState::Ready
                    }
                }
                "ready" => {
                    let unfinished: Vec<_> = deps[&id]
                        .iter()
                        .filter(|d| state.get(d) != Some(&TaskState::Done))
                        .collect();
                    assert!(
                        unfinished.is_empty(),
                        "task {id} made ready before its dependencies {unfinished:?} were done"
                    );
                    TaskState::Ready
                }
                "cancelled" => {
                    assert_eq!(
                        state.get(&id),
                        Some(&TaskState::Blocked),
                        "task {id} cancelled"
                    );
                    TaskState::Cancelled
                }
                "extended" => {
                    let by = holder.get(&id).map(|(a, _)| a.as_str());
                    assert_eq!(
                        by,
                        Some(e.agent.as_str()),
                        "task {id} extended by a non-holder"
                    );
                    TaskState::Claimed
                }
                other => panic!("unknown task event {other}"),
            };
            state.insert(id, next);
        } else if let Some(kind) = e.kind.strip_prefix("lease.") {
            match kind {
                "granted" => {
                    sum.leases += 1;
                    let id = id_of(&e.subject, "lease/");
                    let d = detail(e);
                    let lease = LiveLease {
                        agent: e.agent.clone(),
                        resources: serde_json::from_value(d["resources"].clone()).unwrap(),
                        mode: if d["mode"] == "shared" {
                            Mode::Shared
                        } else {
                            Mode::Exclusive
                        },
                    };
                    for (other_id, other) in &live {
                        // An agent's own leases may overlap.
                        let someone_else = other.agent != lease.agent;
                        let exclusive =
                            lease.mode == Mode::Exclusive || other.mode == Mode::Exclusive;
                        let clash = lease
                            .resources
                            .iter()
                            .any(|a| other.resources.iter().any(|b| overlaps(a, b)));
                        assert!(
                            !(someone_else && exclusive && clash),
                            "lease {id} ({lease:?}) granted at {} while lease {other_id} ({other:?}) was live",
                            e.at
                        );
                    }
                    live.insert(id, lease);
                }
                "renewed" => {
                    let id = id_of(&e.subject, "lease/");
                    assert!(live.contains_key(&id), "lease {id} renewed but not live");
                }
                "released" | "expired" => {
                    let id = id_of(&e.subject, "lease/");
                    live.remove(&id)
                        .unwrap_or_else(|| panic!("lease {id} ended twice (event {})", e.seq));
                }
                "wait-ended" => {}
                other => panic!("unknown lease event {other}"),
            }
        } else if e.kind == "agent.ended" && detail(e)["state"] == "crashed" {
            sum.crashes += 1;
        } else if e.kind == "host.lost" {
            sum.hosts_lost += 1;
        }
    }

    // The tables agree with the journal, and every task ended.
    let tasks = block(env.list_tasks(None, None, 1_000_000)).unwrap();
    assert_eq!(tasks.len(), state.len(), "tasks in the table vs pushed");
    for t in &tasks {
        assert_eq!(
            state.get(&t.id),
            Some(&t.state),
            "task {} is {:?} in the table but its events say {:?}",
            t.id,
            t.state,
            state.get(&t.id)
        );
        match t.state {
            TaskState::Done => sum.done += 1,
            TaskState::Dead => sum.dead += 1,
            TaskState::Cancelled => sum.cancelled += 1,
            other => panic!("task {} was lost: still {other:?} at the end", t.id),
        }
        let n = completions.get(&t.id).copied().unwrap_or(0);
        let want = u32::from(t.state == TaskState::Done);
        assert_eq!(n, want, "task {} completed {n} times", t.id);
    }
    let holdings = block(env.list_reservations("")).unwrap();
    let agents = block(env.list_agents()).unwrap();
    for h in &holdings {
        let agent = agents.iter().find(|a| a.id == h.holder);
        assert!(
            agent.is_some_and(|a| a.state == "running"),
            "lease {} left held by {} ({:?})",
            h.lease,
            h.holder,
            agent.map(|a| &a.state)
        );
        assert!(
            live.contains_key(&h.lease),
            "lease {} not in the journal",
            h.lease
        );
    }
    // Every lease row (expired or not) is one the journal has not ended, and
    // the other way round.
    let rows: Vec<u64> = rusqlite::Connection::open(db)
        .unwrap()
        .prepare("SELECT id FROM leases ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        live.keys().copied().collect::<Vec<_>>(),
        "lease rows vs leases the journal has not ended"
    );
    assert_eq!(super::integrity_check(db), "ok");
    env.close();
    sum
}
