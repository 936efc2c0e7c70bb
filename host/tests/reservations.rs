//! Reservations: the conflict rule, all-or-none grants, expiry, fencing
//! tokens and fair waiting.

#[macro_use]
mod common;

use std::time::Duration;

use common::{agent, open, res};
use wawe::env::{EnvError, EventFilter, Mode};

const TTL: u64 = 10_000;

async fn conflict_matrix_mode_by_overlap_by_holder() {
    // (held, wanted, held mode, wanted mode, same holder?) -> conflict?
    let overlapping = [
        ("a", "a"),
        ("src/", "src/main.rs"),
        ("src/x", "src/"),
        ("src/", "src"),
    ];
    let disjoint = [("a", "b"), ("src/", "srcs/x"), ("src", "src/main.rs")];
    let modes = [Mode::Exclusive, Mode::Shared];
    for (held_res, wanted_res, overlap) in overlapping
        .iter()
        .map(|(h, w)| (*h, *w, true))
        .chain(disjoint.iter().map(|(h, w)| (*h, *w, false)))
    {
        for held_mode in modes {
            for wanted_mode in modes {
                for same_holder in [true, false] {
                    let t = open();
                    let a = agent("a");
                    let b = if same_holder { agent("a") } else { agent("b") };
                    t.env
                        .reserve(&a, &res(&[held_res]), held_mode, TTL, 0)
                        .await
                        .unwrap();
                    let got = t
                        .env
                        .reserve(&b, &res(&[wanted_res]), wanted_mode, TTL, 0)
                        .await;
                    let expect_conflict = overlap
                        && !same_holder
                        && (held_mode == Mode::Exclusive || wanted_mode == Mode::Exclusive);
                    let case = format!(
                        "held {held_res} {held_mode:?}, wanted {wanted_res} {wanted_mode:?}, same holder {same_holder}"
                    );
                    match got {
                        Err(EnvError::Conflict {
                            holder, resource, ..
                        }) => {
                            assert!(expect_conflict, "unexpected conflict: {case}");
                            assert_eq!(holder, "a", "{case}");
                            assert_eq!(resource, held_res, "{case}");
                        }
                        Ok(_) => assert!(!expect_conflict, "missing conflict: {case}"),
                        Err(e) => panic!("{case}: {e}"),
                    }
                }
            }
        }
    }
}

async fn reserve_grants_all_resources_or_none() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    t.env
        .reserve(&a, &res(&["y"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    let err = t
        .env
        .reserve(&b, &res(&["x", "y", "z"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, EnvError::Conflict { ref resource, .. } if resource == "y"));
    // Nothing of the refused request is held: x and z are free.
    assert!(t.env.list_reservations("x").await.unwrap().is_empty());
    assert!(t.env.list_reservations("z").await.unwrap().is_empty());
    t.env
        .reserve(&agent("c"), &res(&["x", "z"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
}

async fn expired_lease_is_invisible_at_once_without_a_sweep() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let lease = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    assert!(
        t.env
            .reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 0)
            .await
            .is_err()
    );
    t.clock.advance(1_000);
    assert!(t.env.list_reservations("").await.unwrap().is_empty());
    let granted = t
        .env
        .reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    assert!(granted.token > lease.token);
    // The old holder can neither renew nor release what it lost.
    assert!(matches!(
        t.env.renew(&a, lease.id, TTL).await,
        Err(EnvError::NotFound(_))
    ));
    assert!(matches!(
        t.env.release(&a, lease.id).await,
        Err(EnvError::NotFound(_))
    ));
}

async fn sweep_journals_each_expired_lease() {
    let t = open();
    t.env
        .reserve(&agent("a"), &res(&["r"]), Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    t.clock.advance(5_000);
    let swept = t.env.sweep().await.unwrap();
    assert_eq!(swept.leases_expired, 1);
    let filter = EventFilter {
        kinds: vec!["lease.expired".into()],
        ..Default::default()
    };
    assert_eq!(t.env.read_events(0, &filter, 100).await.unwrap().len(), 1);
    assert_eq!(t.env.sweep().await.unwrap().leases_expired, 0);
}

async fn fencing_tokens_only_grow_across_leases_and_holders() {
    let t = open();
    let mut last = 0;
    for i in 0..20 {
        let who = agent(if i % 2 == 0 { "a" } else { "b" });
        let lease = t
            .env
            .reserve(&who, &res(&["r"]), Mode::Exclusive, TTL, 0)
            .await
            .unwrap();
        assert!(lease.token > last, "token {} after {last}", lease.token);
        last = lease.token;
        t.env.release(&who, lease.id).await.unwrap();
    }
}

async fn stale_fencing_token_is_refused_by_a_guarded_write() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let old = t
        .env
        .reserve(&a, &res(&["cfg"]), Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    t.clock.advance(2_000);
    let new = t
        .env
        .reserve(&b, &res(&["cfg"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    t.env
        .put_value(&b, "cfg", "new", None, Some(new.token))
        .await
        .unwrap();
    let err = t
        .env
        .put_value(&a, "cfg", "old", None, Some(old.token))
        .await
        .unwrap_err();
    assert_eq!(err, EnvError::StaleToken(old.token));
    assert_eq!(t.env.get_value("cfg").await.unwrap().unwrap().value, "new");
    // A token that was never issued is refused too, so it cannot lock others out.
    let forged = t
        .env
        .put_value(&a, "cfg", "x", None, Some(u64::MAX / 2))
        .await;
    assert!(matches!(forged, Err(EnvError::InvalidArgument(_))));
}

async fn renew_extends_only_the_callers_live_lease() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let lease = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 1_000, 0)
        .await
        .unwrap();
    t.clock.advance(900);
    let renewed = t.env.renew(&a, lease.id, 1_000).await.unwrap();
    assert_eq!(renewed.expires_at, t.env.now_ms() + 1_000);
    assert_eq!(renewed.token, lease.token);
    t.clock.advance(900);
    assert!(
        t.env
            .reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 0)
            .await
            .is_err()
    );
    assert!(matches!(
        t.env.renew(&b, lease.id, 1_000).await,
        Err(EnvError::NotFound(_))
    ));
}

async fn another_agents_lease_cannot_be_released() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let lease = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    assert!(matches!(
        t.env.release(&b, lease.id).await,
        Err(EnvError::NotFound(_))
    ));
    assert_eq!(t.env.list_reservations("r").await.unwrap().len(), 1);
}

async fn list_shows_holders_by_resource_prefix() {
    let t = open();
    t.env
        .reserve(&agent("a"), &res(&["src/a", "src/b"]), Mode::Shared, TTL, 0)
        .await
        .unwrap();
    t.env
        .reserve(&agent("b"), &res(&["doc/x"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    let src = t.env.list_reservations("src/").await.unwrap();
    assert_eq!(
        src.iter().map(|h| h.resource.as_str()).collect::<Vec<_>>(),
        ["src/a", "src/b"]
    );
    assert!(
        src.iter()
            .all(|h| h.holder == "a" && h.mode == Mode::Shared)
    );
    assert_eq!(t.env.list_reservations("").await.unwrap().len(), 3);
}

async fn malformed_requests_are_refused_with_a_reason() {
    let t = open();
    let a = agent("a");
    let cases = [res(&[]), res(&["/abs"]), res(&["a//b"])];
    for r in cases {
        let e = t
            .env
            .reserve(&a, &r, Mode::Exclusive, TTL, 0)
            .await
            .unwrap_err();
        assert!(matches!(e, EnvError::InvalidArgument(_)), "{r:?}: {e}");
    }
    let zero_ttl = t.env.reserve(&a, &res(&["x"]), Mode::Exclusive, 0, 0).await;
    assert!(matches!(zero_ttl, Err(EnvError::InvalidArgument(_))));
    let many: Vec<String> = (0..1000).map(|i| format!("r{i}")).collect();
    let e = t
        .env
        .reserve(&a, &many, Mode::Exclusive, TTL, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, EnvError::TooLarge { .. }));
}

async fn waiting_reserve_is_woken_by_a_release() {
    let t = open();
    let (a, b) = (agent("a"), agent("b"));
    let lease = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let env = t.env.clone();
    let waiter = tokio::spawn(async move {
        env.reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 30_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    t.env.release(&a, lease.id).await.unwrap();
    let granted = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was not woken")
        .unwrap()
        .unwrap();
    assert!(granted.token > lease.token);
}

async fn waiters_are_served_first_come_first_served() {
    let t = open();
    let (a, b, c) = (agent("a"), agent("b"), agent("c"));
    let lease = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let env = t.env.clone();
    let first = tokio::spawn(async move {
        env.reserve(&b, &res(&["r"]), Mode::Exclusive, 60_000, 30_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.env.release(&a, lease.id).await.unwrap();
    // A newcomer does not jump the queue, even without waiting itself: right
    // after the release, r is either still promised to b or already b's.
    let jumper = t
        .env
        .reserve(&c, &res(&["r"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(jumper, EnvError::Conflict { ref holder, .. } if holder == "b"),
        "{jumper}"
    );
    let granted = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(t.env.list_reservations("r").await.unwrap()[0].holder, "b");
    assert!(granted.token > lease.token);
}

async fn a_wait_that_times_out_reports_the_conflict_and_leaves_no_queue_entry() {
    let t = open();
    let (a, b, c) = (agent("a"), agent("b"), agent("c"));
    let held = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let e = t
        .env
        .reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 50)
        .await
        .unwrap_err();
    assert!(matches!(e, EnvError::Conflict { ref holder, .. } if holder == "a"));
    t.env.release(&a, held.id).await.unwrap();
    // b gave up, so c is not queued behind it.
    t.env
        .reserve(&c, &res(&["r"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
}

async fn a_holder_is_not_queued_behind_a_waiter_that_waits_for_it() {
    let t = open();
    let (p, q) = (agent("p"), agent("q"));
    t.env
        .reserve(&p, &res(&["x"]), Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let env = t.env.clone();
    let waiting = tokio::spawn(async move {
        env.reserve(&q, &res(&["x", "y"]), Mode::Exclusive, TTL, 30_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // q waits for p's x; p asking for y (free) must not wait for q: that
    // would be a deadlock.
    t.env
        .reserve(&p, &res(&["y"]), Mode::Exclusive, TTL, 0)
        .await
        .unwrap();
    // Another newcomer still queues behind q.
    let e = t
        .env
        .reserve(&agent("r"), &res(&["x", "y"]), Mode::Exclusive, TTL, 0)
        .await;
    assert!(matches!(e, Err(EnvError::Conflict { .. })));
    waiting.abort();
}

async fn a_waiter_that_goes_away_leaves_the_queue() {
    let t = open();
    let (a, b, c) = (agent("a"), agent("b"), agent("c"));
    let held = t
        .env
        .reserve(&a, &res(&["r"]), Mode::Exclusive, 60_000, 0)
        .await
        .unwrap();
    let env = t.env.clone();
    let waiting = tokio::spawn(async move {
        env.reserve(&b, &res(&["r"]), Mode::Exclusive, TTL, 30_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort(); // the waiting caller is dropped mid-wait
    let _ = waiting.await;
    t.env.release(&a, held.id).await.unwrap();
    // b's queue entry went with it, so c is served at once.
    let granted = t
        .env
        .reserve(&c, &res(&["r"]), Mode::Exclusive, TTL, 2_000)
        .await;
    assert!(granted.is_ok(), "{granted:?}");
}

/// A reserve that arrives after its agent was recorded ended (a host cut off
/// from the environment, reaped by others, whose queued reserve lands when
/// it reconnects) is refused, and nothing is held; a running agent, or one
/// the environment never saw started, still gets its lease.
async fn an_agent_recorded_as_ended_cannot_take_a_lease() {
    let t = open();
    let host = t.env.register_host("box", 1, 5_000).await.unwrap();
    let gone = t
        .env
        .agent_started(&host, "w", 0, "sha256:x")
        .await
        .unwrap();
    let running = t
        .env
        .agent_started(&host, "w", 1, "sha256:x")
        .await
        .unwrap();
    t.env
        .agent_ended(&gone, wawe::env::AgentEnd::Lost, "its host went silent")
        .await
        .unwrap();
    let refused = t
        .env
        .reserve(&gone, &res(&["files/2"]), Mode::Exclusive, 2_000, 0)
        .await;
    assert!(
        matches!(&refused, Err(EnvError::NotFound(m)) if m.contains("lost")),
        "{refused:?}"
    );
    assert!(t.env.list_reservations("").await.unwrap().is_empty());
    for who in [running, agent("never-started")] {
        let lease = t
            .env
            .reserve(&who, &res(&["files/2"]), Mode::Shared, 2_000, 0)
            .await;
        assert!(lease.is_ok(), "{who}: {lease:?}");
    }
}

every_backend!(
    an_agent_recorded_as_ended_cannot_take_a_lease,
    conflict_matrix_mode_by_overlap_by_holder,
    reserve_grants_all_resources_or_none,
    expired_lease_is_invisible_at_once_without_a_sweep,
    sweep_journals_each_expired_lease,
    fencing_tokens_only_grow_across_leases_and_holders,
    stale_fencing_token_is_refused_by_a_guarded_write,
    renew_extends_only_the_callers_live_lease,
    another_agents_lease_cannot_be_released,
    list_shows_holders_by_resource_prefix,
    malformed_requests_are_refused_with_a_reason,
    waiting_reserve_is_woken_by_a_release,
    waiters_are_served_first_come_first_served,
    a_wait_that_times_out_reports_the_conflict_and_leaves_no_queue_entry,
    a_holder_is_not_queued_behind_a_waiter_that_waits_for_it,
    a_waiter_that_goes_away_leaves_the_queue,
);
