//! Task queues: claim order, delay, dedupe, dependencies, tokens, retries,
//! dead letters and waiting.

#[macro_use]
mod common;

use std::time::Duration;

use common::{agent, open, open_with};
use wawe::env::{AgentEnd, Clock, EnvError, EnvOptions, PushOptions, TaskState};

const LEASE: u64 = 30_000;

fn prio(priority: i32) -> PushOptions {
    PushOptions {
        priority,
        ..Default::default()
    }
}

async fn claim_takes_highest_priority_then_oldest() {
    let t = open();
    let p = agent("producer");
    let low = t.env.push(&p, "q", "low", prio(0)).await.unwrap().id;
    let high1 = t.env.push(&p, "q", "high1", prio(5)).await.unwrap().id;
    let high2 = t.env.push(&p, "q", "high2", prio(5)).await.unwrap().id;
    let mid = t.env.push(&p, "q", "mid", prio(1)).await.unwrap().id;
    let w = agent("w");
    let mut order = Vec::new();
    while let Some(c) = t.env.claim(&w, "q", LEASE, 0).await.unwrap() {
        assert_eq!(c.attempt, 1);
        order.push(c.id);
    }
    assert_eq!(order, [high1, high2, mid, low]);
}

async fn queues_are_separate() {
    let t = open();
    t.env.push(&agent("p"), "a", "x", prio(0)).await.unwrap();
    assert!(
        t.env
            .claim(&agent("w"), "b", LEASE, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        t.env
            .claim(&agent("w"), "a", LEASE, 0)
            .await
            .unwrap()
            .is_some()
    );
}

async fn delayed_task_is_not_claimable_before_its_time() {
    let t = open();
    let opts = PushOptions {
        delay_ms: 5_000,
        ..Default::default()
    };
    let id = t
        .env
        .push(&agent("p"), "q", "later", opts)
        .await
        .unwrap()
        .id;
    let w = agent("w");
    assert!(t.env.claim(&w, "q", LEASE, 0).await.unwrap().is_none());
    t.clock.advance(4_999);
    assert!(t.env.claim(&w, "q", LEASE, 0).await.unwrap().is_none());
    t.clock.advance(1);
    assert_eq!(
        t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap().id,
        id
    );
}

async fn dedupe_key_returns_the_live_task_and_frees_when_it_ends() {
    let t = open();
    let p = agent("p");
    let keyed = || PushOptions {
        dedupe_key: Some("build:wawe".into()),
        ..Default::default()
    };
    let first = t.env.push(&p, "q", "one", keyed()).await.unwrap();
    let second = t.env.push(&p, "q", "two", keyed()).await.unwrap();
    assert!(!first.deduplicated);
    assert!(second.deduplicated);
    assert_eq!(first.id, second.id);
    assert_eq!(
        t.env.list_tasks(Some("q"), None, 100).await.unwrap().len(),
        1
    );
    // Another queue has its own keys.
    assert!(
        !t.env
            .push(&p, "other", "x", keyed())
            .await
            .unwrap()
            .deduplicated
    );
    // Once the task is done, the key is free again.
    let w = agent("w");
    let c = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    t.env.complete(&w, c.id, c.token, "ok").await.unwrap();
    let third = t.env.push(&p, "q", "three", keyed()).await.unwrap();
    assert!(!third.deduplicated);
    assert_ne!(third.id, first.id);
}

async fn dependent_task_becomes_ready_only_when_all_dependencies_are_done() {
    let t = open();
    let (p, w) = (agent("p"), agent("w"));
    let a = t.env.push(&p, "q", "a", prio(0)).await.unwrap().id;
    let b = t.env.push(&p, "q", "b", prio(0)).await.unwrap().id;
    let opts = PushOptions {
        depends_on: vec![a, b],
        priority: 100,
        ..Default::default()
    };
    let c = t.env.push(&p, "q", "c", opts).await.unwrap().id;
    assert_eq!(t.env.get_task(c).await.unwrap().state, TaskState::Blocked);
    assert_eq!(t.env.get_task(c).await.unwrap().depends_on, [a, b]);
    let first = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    assert_eq!(
        first.id, a,
        "the blocked high-priority task must not be claimed"
    );
    t.env.complete(&w, first.id, first.token, "").await.unwrap();
    assert_eq!(t.env.get_task(c).await.unwrap().state, TaskState::Blocked);
    let second = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    t.env
        .complete(&w, second.id, second.token, "")
        .await
        .unwrap();
    assert_eq!(t.env.get_task(c).await.unwrap().state, TaskState::Ready);
    assert_eq!(t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap().id, c);
}

async fn a_dead_dependency_cancels_its_dependents_transitively() {
    let t = open();
    let (p, w) = (agent("p"), agent("w"));
    let a = t.env.push(&p, "q", "a", prio(0)).await.unwrap().id;
    let b = t
        .env
        .push(
            &p,
            "q",
            "b",
            PushOptions {
                depends_on: vec![a],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let c = t
        .env
        .push(
            &p,
            "q",
            "c",
            PushOptions {
                depends_on: vec![b],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let claimed = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    t.env
        .fail(&w, claimed.id, claimed.token, "broken input", false)
        .await
        .unwrap();
    assert_eq!(t.env.get_task(a).await.unwrap().state, TaskState::Dead);
    assert_eq!(t.env.get_task(b).await.unwrap().state, TaskState::Cancelled);
    assert_eq!(t.env.get_task(c).await.unwrap().state, TaskState::Cancelled);
    // A task pushed onto a dead dependency starts cancelled.
    let d = t
        .env
        .push(
            &p,
            "q",
            "d",
            PushOptions {
                depends_on: vec![a],
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    assert_eq!(t.env.get_task(d).await.unwrap().state, TaskState::Cancelled);
}

async fn unknown_dependency_is_refused() {
    let t = open();
    let e = t
        .env
        .push(
            &agent("p"),
            "q",
            "x",
            PushOptions {
                depends_on: vec![999],
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(e, Err(EnvError::NotFound(_))));
    assert!(t.env.list_tasks(None, None, 10).await.unwrap().is_empty());
}

async fn stale_token_is_refused_so_a_task_completes_once() {
    let t = open();
    let (p, w1, w2) = (agent("p"), agent("w1"), agent("w2"));
    let id = t.env.push(&p, "q", "x", prio(0)).await.unwrap().id;
    let first = t.env.claim(&w1, "q", 1_000, 0).await.unwrap().unwrap();
    t.clock.advance(1_000); // the claim lapses
    // A lapsed claim can no longer be used, even before anyone re-claims.
    assert_eq!(
        t.env.complete(&w1, id, first.token, "late").await,
        Err(EnvError::StaleToken(first.token))
    );
    t.clock.advance(10 * 60_000); // past any backoff
    let second = t.env.claim(&w2, "q", LEASE, 0).await.unwrap().unwrap();
    assert_eq!(second.id, id);
    assert_eq!(second.attempt, 2);
    assert!(second.token > first.token);
    assert_eq!(
        t.env.complete(&w1, id, first.token, "late").await,
        Err(EnvError::StaleToken(first.token))
    );
    assert_eq!(
        t.env.fail(&w1, id, first.token, "x", true).await,
        Err(EnvError::StaleToken(first.token))
    );
    assert_eq!(
        t.env.extend(&w1, id, first.token, 1).await,
        Err(EnvError::StaleToken(first.token))
    );
    // Another agent cannot use the current token either.
    assert_eq!(
        t.env.complete(&w1, id, second.token, "steal").await,
        Err(EnvError::StaleToken(second.token))
    );
    t.env.complete(&w2, id, second.token, "ok").await.unwrap();
    assert_eq!(
        t.env.complete(&w2, id, second.token, "again").await,
        Err(EnvError::StaleToken(second.token))
    );
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Done);
    assert_eq!(task.result.as_deref(), Some("ok"));
}

async fn extend_keeps_a_claim_alive() {
    let t = open();
    let (p, w, other) = (agent("p"), agent("w"), agent("o"));
    t.env.push(&p, "q", "x", prio(0)).await.unwrap();
    let c = t.env.claim(&w, "q", 1_000, 0).await.unwrap().unwrap();
    t.clock.advance(900);
    let until = t.env.extend(&w, c.id, c.token, 1_000).await.unwrap();
    assert_eq!(until, t.env.now_ms() + 1_000);
    t.clock.advance(900);
    assert!(t.env.claim(&other, "q", LEASE, 0).await.unwrap().is_none());
    t.env.complete(&w, c.id, c.token, "").await.unwrap();
}

async fn failures_back_off_exponentially_then_dead_letter() {
    let opts = EnvOptions {
        retry_base_ms: 1_000,
        retry_max_ms: 60_000,
        ..Default::default()
    };
    let t = open_with(opts);
    let (p, w) = (agent("p"), agent("w"));
    let id = t
        .env
        .push(
            &p,
            "q",
            "flaky",
            PushOptions {
                max_attempts: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    for (attempt, (lo, hi)) in [(1u32, (500u64, 1_000u64)), (2, (1_000, 2_000))] {
        let c = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
        assert_eq!(c.attempt, attempt);
        t.env
            .fail(&w, id, c.token, &format!("boom {attempt}"), true)
            .await
            .unwrap();
        let task = t.env.get_task(id).await.unwrap();
        assert_eq!(task.state, TaskState::Ready);
        let delay = task.not_before - t.env.now_ms();
        assert!(
            (lo..=hi).contains(&delay),
            "attempt {attempt}: backoff {delay} not in {lo}..={hi}"
        );
        assert!(
            t.env.claim(&w, "q", LEASE, 0).await.unwrap().is_none(),
            "claimable during backoff"
        );
        t.clock.advance(delay);
    }
    let c = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    assert_eq!(c.attempt, 3);
    t.env.fail(&w, id, c.token, "boom 3", true).await.unwrap();
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Dead);
    assert_eq!(task.last_error.as_deref(), Some("boom 3"));
    assert_eq!(task.attempts, 3);
}

async fn a_lapsed_claim_counts_as_a_failed_attempt() {
    let t = open();
    let (p, w) = (agent("p"), agent("w"));
    let id = t
        .env
        .push(
            &p,
            "q",
            "x",
            PushOptions {
                max_attempts: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    t.env.claim(&w, "q", 1_000, 0).await.unwrap().unwrap();
    t.clock.advance(1_000);
    let swept = t.env.sweep().await.unwrap();
    assert_eq!(swept.claims_lapsed, 1);
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Dead);
    assert!(task.last_error.unwrap().contains("lapsed"));
}

async fn an_ended_agent_releases_leases_and_its_tasks_go_back() {
    let t = open();
    let p = agent("p");
    let host = t.env.register_host("box", 42, 10_000).await.unwrap();
    let w = t
        .env
        .agent_started(&host, "worker", 0, "sha256:abc")
        .await
        .unwrap();
    let id = t.env.push(&p, "q", "x", prio(0)).await.unwrap().id;
    let c = t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    t.env
        .reserve(
            &w,
            &["r".to_string()],
            wawe::env::Mode::Exclusive,
            60_000,
            0,
        )
        .await
        .unwrap();
    t.env
        .agent_ended(&w, AgentEnd::Crashed, "panicked at 'oops'")
        .await
        .unwrap();
    assert!(t.env.list_reservations("").await.unwrap().is_empty());
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Ready);
    assert!(task.last_error.unwrap().contains("oops"));
    assert_eq!(
        t.env.complete(&w, id, c.token, "").await,
        Err(EnvError::StaleToken(c.token))
    );
    let agents = t.env.list_agents().await.unwrap();
    assert_eq!(agents[0].state, "crashed");
    assert_eq!(agents[0].end_reason.as_deref(), Some("panicked at 'oops'"));
}

async fn oversized_payload_is_refused() {
    let opts = EnvOptions {
        max_payload_bytes: 100,
        ..Default::default()
    };
    let t = open_with(opts);
    let e = t
        .env
        .push(&agent("p"), "q", &"x".repeat(101), prio(0))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        EnvError::TooLarge {
            what: "payload".into(),
            limit: 100,
            actual: 101
        }
    );
}

async fn a_waiting_claim_is_woken_by_a_push() {
    let t = open();
    let env = t.env.clone();
    let waiter = tokio::spawn(async move { env.claim(&agent("w"), "q", LEASE, 30_000).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let id = t
        .env
        .push(&agent("p"), "q", "wake", prio(0))
        .await
        .unwrap()
        .id;
    let claimed = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiting claim was not woken")
        .unwrap()
        .unwrap()
        .expect("a task");
    assert_eq!(claimed.id, id);
}

async fn a_waiting_claim_returns_none_when_its_wait_ends() {
    let t = open();
    assert!(
        t.env
            .claim(&agent("w"), "q", LEASE, 30)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_stopped_agents_task_goes_back_at_once_without_using_an_attempt() {
    let t = open();
    let host = t.env.register_host("box", 1, 10_000).await.unwrap();
    let w = t
        .env
        .agent_started(&host, "worker", 0, "sha256:x")
        .await
        .unwrap();
    let id = t
        .env
        .push(
            &agent("p"),
            "q",
            "x",
            PushOptions {
                max_attempts: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    t.env.claim(&w, "q", LEASE, 0).await.unwrap().unwrap();
    t.env
        .agent_ended(&w, AgentEnd::Stopped, "its host stopped")
        .await
        .unwrap();
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Ready, 0));
    assert_eq!(
        t.env
            .claim(&agent("w2"), "q", LEASE, 0)
            .await
            .unwrap()
            .unwrap()
            .attempt,
        1
    );
}

async fn ttls_beyond_a_day_are_refused() {
    let t = open();
    let a = agent("a");
    let r = t
        .env
        .reserve(
            &a,
            &["x".to_string()],
            wawe::env::Mode::Exclusive,
            u64::MAX,
            0,
        )
        .await;
    assert!(matches!(r, Err(EnvError::InvalidArgument(_))), "{r:?}");
    t.env.push(&a, "q", "x", prio(0)).await.unwrap();
    assert!(matches!(
        t.env.claim(&a, "q", u64::MAX, 0).await,
        Err(EnvError::InvalidArgument(_))
    ));
    // Waits are capped rather than refused: a huge wait is just a long one.
    assert!(
        t.env
            .claim(&a, "q", LEASE, u64::MAX)
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_silent_host_is_reaped_once_its_agents_lost_their_leases_ended_and_tasks_back() {
    let t = open();
    let dead = t.env.register_host("box-a", 1, 5_000).await.unwrap();
    let alive = t.env.register_host("box-b", 2, 5_000).await.unwrap();
    let w = t
        .env
        .agent_started(&dead, "worker", 0, "sha256:x")
        .await
        .unwrap();
    let id = t.env.push(&agent("p"), "q", "x", prio(0)).await.unwrap().id;
    let c = t.env.claim(&w, "q", 600_000, 0).await.unwrap().unwrap();
    t.env
        .reserve(
            &w,
            &["r".to_string()],
            wawe::env::Mode::Exclusive,
            600_000,
            0,
        )
        .await
        .unwrap();
    t.clock.advance(4_000);
    t.env.keepalive(&alive).await.unwrap();
    assert_eq!(
        t.env.sweep().await.unwrap().hosts_reaped,
        0,
        "not silent long enough yet"
    );
    t.clock.advance(2_000);
    t.env.keepalive(&alive).await.unwrap();
    // Two hosts sweeping: the first reaps, the second finds nothing to do.
    let other = wawe::env::Env::open_with_clock(
        t.env.location(),
        wawe::env::EnvOptions::default(),
        std::sync::Arc::new(t.clock.clone()),
    )
    .unwrap();
    let (first, second) = tokio::join!(t.env.sweep(), other.sweep());
    assert_eq!(
        first.unwrap().hosts_reaped + second.unwrap().hosts_reaped,
        1
    );
    assert!(t.env.list_reservations("").await.unwrap().is_empty());
    let task = t.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Ready);
    assert!(task.last_error.unwrap().contains("went silent"));
    assert_eq!(
        t.env.complete(&w, id, c.token, "late").await,
        Err(EnvError::StaleToken(c.token))
    );
    let hosts = t.env.list_hosts().await.unwrap();
    let state = |id: &str| hosts.iter().find(|h| h.id == id).unwrap().state.clone();
    assert_eq!(
        (state(&dead).as_str(), state(&alive).as_str()),
        ("lost", "alive")
    );
    assert_eq!(t.env.list_agents().await.unwrap()[0].state, "lost");
    // A reaped host cannot carry on as if nothing happened.
    assert!(matches!(
        t.env.keepalive(&dead).await,
        Err(EnvError::NotFound(_))
    ));
}

/// A keepalive renews the leases of its host's running agents and nobody
/// else's, and a running agent's last sighting is its host's heartbeat; an
/// ended agent keeps the time it ended.
async fn a_keepalive_renews_its_own_agents_leases_and_their_last_sighting() {
    let t = open();
    let (h, other) = (
        t.env.register_host("box-a", 1, 5_000).await.unwrap(),
        t.env.register_host("box-b", 2, 5_000).await.unwrap(),
    );
    let started = t.clock.now_ms();
    let w = t.env.agent_started(&h, "w", 0, "sha256:x").await.unwrap();
    let done = t
        .env
        .agent_started(&h, "done", 0, "sha256:x")
        .await
        .unwrap();
    let x = t
        .env
        .agent_started(&other, "x", 0, "sha256:x")
        .await
        .unwrap();
    let mode = wawe::env::Mode::Exclusive;
    t.env
        .reserve(&w, &["mine".into()], mode, 1_000, 0)
        .await
        .unwrap();
    t.env
        .reserve(&x, &["theirs".into()], mode, 3_000, 0)
        .await
        .unwrap();
    t.env
        .agent_ended(&done, AgentEnd::Exited, "")
        .await
        .unwrap();
    t.clock.advance(800);
    assert_eq!(t.env.keepalive(&h).await.unwrap(), Some(1_000));
    let now = t.clock.now_ms();
    let seen = |id: &str, agents: &[wawe::env::AgentInfo]| {
        agents.iter().find(|a| a.id == id).unwrap().last_seen
    };
    let agents = t.env.list_agents().await.unwrap();
    assert_eq!(seen(w.as_str(), &agents), now);
    assert_eq!(seen(done.as_str(), &agents), started);
    assert_eq!(
        seen(x.as_str(), &agents),
        started,
        "the other host has not renewed"
    );
    assert_eq!(t.env.get_agent(w.as_str()).await.unwrap().last_seen, now);
    let held = t.env.list_reservations("").await.unwrap();
    let expiry = |r: &str| held.iter().find(|l| l.resource == r).unwrap().expires_at;
    assert_eq!(expiry("mine"), now + 1_000);
    assert_eq!(
        expiry("theirs"),
        started + 3_000,
        "another host's lease is its own"
    );
}

every_backend!(
    a_keepalive_renews_its_own_agents_leases_and_their_last_sighting,
    claim_takes_highest_priority_then_oldest,
    queues_are_separate,
    delayed_task_is_not_claimable_before_its_time,
    dedupe_key_returns_the_live_task_and_frees_when_it_ends,
    dependent_task_becomes_ready_only_when_all_dependencies_are_done,
    a_dead_dependency_cancels_its_dependents_transitively,
    unknown_dependency_is_refused,
    stale_token_is_refused_so_a_task_completes_once,
    extend_keeps_a_claim_alive,
    failures_back_off_exponentially_then_dead_letter,
    a_lapsed_claim_counts_as_a_failed_attempt,
    an_ended_agent_releases_leases_and_its_tasks_go_back,
    oversized_payload_is_refused,
    a_waiting_claim_is_woken_by_a_push,
    a_waiting_claim_returns_none_when_its_wait_ends,
    a_stopped_agents_task_goes_back_at_once_without_using_an_attempt,
    ttls_beyond_a_day_are_refused,
    a_silent_host_is_reaped_once_its_agents_lost_their_leases_ended_and_tasks_back,
);
