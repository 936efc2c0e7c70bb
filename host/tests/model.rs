//! Property test: random reserve / release / renew / clock moves, checked
//! against a simple model. Two conflicting live leases never coexist, grants
//! and refusals match the model, and fencing tokens only grow.

mod common;

use proptest::prelude::*;
use wawe::env::{EnvError, Mode, overlaps};

const RESOURCES: [&str; 6] = ["a", "a/", "a/b", "a/b/", "b", "c/d"];
const AGENTS: [&str; 3] = ["x", "y", "z"];

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        agent: usize,
        resources: Vec<usize>,
        shared: bool,
        ttl: u64,
    },
    Release {
        agent: usize,
        pick: usize,
    },
    Renew {
        agent: usize,
        pick: usize,
        ttl: u64,
    },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, prop::collection::vec(0..RESOURCES.len(), 1..3), any::<bool>(), 1..3_000u64)
            .prop_map(|(agent, resources, shared, ttl)| Op::Reserve { agent, resources, shared, ttl }),
        2 => (0..3usize, 0..8usize).prop_map(|(agent, pick)| Op::Release { agent, pick }),
        1 => (0..3usize, 0..8usize, 1..3_000u64).prop_map(|(agent, pick, ttl)| Op::Renew { agent, pick, ttl }),
        2 => (0..2_000u64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone)]
struct ModelLease {
    id: u64,
    agent: usize,
    resources: Vec<String>,
    mode: Mode,
    expires: u64,
}

fn clash(a: &ModelLease, agent: usize, resources: &[String], mode: Mode) -> bool {
    a.agent != agent
        && (a.mode == Mode::Exclusive || mode == Mode::Exclusive)
        && a.resources
            .iter()
            .any(|r| resources.iter().any(|w| overlaps(r, w)))
}

fn run(backend: common::Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    if !common::on_backend(backend) {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = common::open();
        let mut model: Vec<ModelLease> = Vec::new();
        let mut last_token = 0;
        for op in ops {
            let now = t.env.now_ms();
            model.retain(|l| l.expires > now);
            match op {
                Op::Reserve {
                    agent,
                    resources,
                    shared,
                    ttl,
                } => {
                    let names: Vec<String> = resources
                        .iter()
                        .map(|&i| RESOURCES[i].to_string())
                        .collect();
                    let mode = if shared {
                        Mode::Shared
                    } else {
                        Mode::Exclusive
                    };
                    let expect_grant = !model.iter().any(|l| clash(l, agent, &names, mode));
                    let got = t
                        .env
                        .reserve(&common::agent(AGENTS[agent]), &names, mode, ttl, 0)
                        .await;
                    match got {
                        Ok(lease) => {
                            prop_assert!(
                                expect_grant,
                                "granted against the model: {names:?} {mode:?}"
                            );
                            prop_assert!(lease.token > last_token);
                            last_token = lease.token;
                            let mut resources = names.clone();
                            resources.sort();
                            resources.dedup();
                            model.push(ModelLease {
                                id: lease.id,
                                agent,
                                resources,
                                mode,
                                expires: now + ttl,
                            });
                        }
                        Err(EnvError::Conflict { .. }) => {
                            prop_assert!(!expect_grant, "refused against the model")
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Op::Release { agent, pick } => {
                    let Some(target) = model.get(pick % model.len().max(1)).cloned() else {
                        continue;
                    };
                    let got = t
                        .env
                        .release(&common::agent(AGENTS[agent]), target.id)
                        .await;
                    if target.agent == agent {
                        prop_assert!(got.is_ok(), "{got:?}");
                        model.retain(|l| l.id != target.id);
                    } else {
                        prop_assert!(matches!(got, Err(EnvError::NotFound(_))));
                    }
                }
                Op::Renew { agent, pick, ttl } => {
                    let Some(target) = model.get(pick % model.len().max(1)).cloned() else {
                        continue;
                    };
                    let got = t
                        .env
                        .renew(&common::agent(AGENTS[agent]), target.id, ttl)
                        .await;
                    if target.agent == agent {
                        prop_assert_eq!(got.map(|l| l.expires_at).ok(), Some(now + ttl));
                        model
                            .iter_mut()
                            .filter(|l| l.id == target.id)
                            .for_each(|l| l.expires = now + ttl);
                    } else {
                        prop_assert!(matches!(got, Err(EnvError::NotFound(_))));
                    }
                }
                Op::Advance(ms) => t.clock.advance(ms),
            }
            // Invariant: no two live holdings conflict, and the live set is the model's.
            let now = t.env.now_ms();
            let held = t
                .env
                .list_reservations("")
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, h) in held.iter().enumerate() {
                for g in &held[i + 1..] {
                    let conflict = h.holder != g.holder
                        && (h.mode == Mode::Exclusive || g.mode == Mode::Exclusive)
                        && overlaps(&h.resource, &g.resource);
                    prop_assert!(!conflict, "conflicting leases coexist: {h:?} {g:?}");
                }
            }
            let mut live: Vec<u64> = model
                .iter()
                .filter(|l| l.expires > now)
                .map(|l| l.id)
                .collect();
            let mut seen: Vec<u64> = held.iter().map(|h| h.lease).collect();
            live.sort();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(live, seen);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn conflicting_leases_never_coexist_and_tokens_only_grow_on_sqlite(ops in prop::collection::vec(op(), 1..40)) {
        run(common::Backend::Sqlite, ops)?;
    }

    #[test]
    fn conflicting_leases_never_coexist_and_tokens_only_grow_on_postgres(ops in prop::collection::vec(op(), 1..40)) {
        run(common::Backend::Postgres, ops)?;
    }
}
