//! Looking at an environment page by page (what `wawe ui` reads), and the
//! operator's retry and cancel.

#[macro_use]
mod common;

use common::{agent, open, res};
use futures_util::future::join_all;
use wawe::env::{
    AgentEnd, AgentId, Direction, EnvError, EventFilter, MAX_EVENTS_SCANNED, Mode, PushOptions,
    TaskQuery, TaskState,
};

async fn overview_counts_tasks_per_queue_agents_and_live_leases() {
    let t = open();
    let (env, a) = (&t.env, agent("a"));
    for q in ["alpha", "alpha", "beta"] {
        env.push(&a, q, "{}", PushOptions::default()).await.unwrap();
    }
    env.claim(&a, "alpha", 10_000, 0).await.unwrap().unwrap();
    env.reserve(&a, &res(&["r"]), Mode::Exclusive, 10_000, 0)
        .await
        .unwrap();
    env.put_value(&a, "k", "v", None, None).await.unwrap();
    let host = env.register_host("box", 1, 10_000).await.unwrap();
    env.agent_started(&host, "w", 0, "d").await.unwrap();
    let o = env.overview().await.unwrap();
    let names: Vec<&str> = o.queues.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(o.queues[0].count(TaskState::Ready), 1);
    assert_eq!(o.queues[0].count(TaskState::Claimed), 1);
    assert_eq!(o.queues[1].count(TaskState::Ready), 1);
    assert_eq!(o.agents, vec![("running".to_string(), 1)]);
    assert_eq!((o.leases, o.waiters, o.values), (1, 0, 1));
    assert_eq!(o.events, o.last_seq);
    t.clock.advance(20_000);
    assert_eq!(
        env.overview().await.unwrap().leases,
        0,
        "expired leases are not live"
    );
}

async fn task_pages_follow_their_cursor_and_filters() {
    let t = open();
    let (env, a, b) = (&t.env, agent("a"), agent("b"));
    for i in 0..7 {
        let q = if i % 2 == 0 { "even" } else { "odd" };
        env.push(&a, q, &i.to_string(), PushOptions::default())
            .await
            .unwrap();
    }
    let claimed = env.claim(&b, "even", 10_000, 0).await.unwrap().unwrap();
    let page = |after, limit| TaskQuery {
        queue: Some("even".into()),
        after,
        limit,
        ..TaskQuery::default()
    };
    let first = env.tasks_page(&page(0, 2)).await.unwrap();
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 3]);
    let second = env.tasks_page(&page(3, 2)).await.unwrap();
    assert_eq!(second.iter().map(|t| t.id).collect::<Vec<_>>(), [5, 7]);
    assert!(env.tasks_page(&page(7, 2)).await.unwrap().is_empty());
    let held = env
        .tasks_page(&TaskQuery {
            claimed_by: Some("b".into()),
            limit: 10,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, claimed.id);
    let ready_odd = env
        .tasks_page(&TaskQuery {
            queue: Some("odd".into()),
            state: Some(TaskState::Ready),
            limit: 10,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ready_odd.len(), 3);
}

async fn a_tasks_story_is_every_event_about_it_and_its_links_both_ways() {
    let t = open();
    let (env, a, w) = (&t.env, agent("a"), agent("w"));
    let host = env.register_host("box", 1, 10_000).await.unwrap();
    let worker = env.agent_started(&host, "w", 0, "d").await.unwrap();
    let first = env
        .push(&a, "q", "1", PushOptions::default())
        .await
        .unwrap();
    // Ten more, so that task/1 and task/10.. share a prefix.
    for _ in 0..10 {
        env.push(&a, "q2", "x", PushOptions::default())
            .await
            .unwrap();
    }
    let after = env
        .push(
            &a,
            "q",
            "2",
            PushOptions {
                depends_on: vec![first.id],
                ..PushOptions::default()
            },
        )
        .await
        .unwrap();
    env.claim(&worker, "q", 10_000, 0).await.unwrap().unwrap();
    env.agent_ended(&worker, AgentEnd::Crashed, "panicked: boom")
        .await
        .unwrap();
    t.clock.advance(60_000);
    let c = env.claim(&w, "q", 10_000, 0).await.unwrap().unwrap();
    env.complete(&w, c.id, c.token, "ok").await.unwrap();
    let story = env.task_story(first.id).await.unwrap();
    assert!(!story.cut_short);
    let story = story.events;
    let kinds: Vec<&str> = story.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "task.pushed",
            "task.claimed",
            "task.retried",
            "task.claimed",
            "task.completed"
        ]
    );
    assert!(
        story
            .iter()
            .all(|e| e.subject == format!("task/{}", first.id))
    );
    assert!(
        story[2].detail.contains("crashed: panicked: boom"),
        "{story:?}"
    );
    assert!(story.windows(2).all(|w| w[0].seq < w[1].seq));
    let links = env.task_links(after.id).await.unwrap();
    assert_eq!(links.depends_on.len(), 1);
    assert_eq!(links.depends_on[0].id, first.id);
    assert_eq!(links.depends_on[0].state, TaskState::Done);
    let back = env.task_links(first.id).await.unwrap();
    assert_eq!(back.dependents.len(), 1);
    assert_eq!(back.dependents[0].id, after.id);
    assert_eq!(back.dependents[0].state, TaskState::Ready);
}

async fn agent_pages_follow_ids_and_filter_by_state() {
    let t = open();
    let env = &t.env;
    let host = env.register_host("box", 1, 10_000).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(env.agent_started(&host, "w", i, "d").await.unwrap());
    }
    env.agent_ended(&ids[1], AgentEnd::Crashed, "trap")
        .await
        .unwrap();
    let mut sorted: Vec<String> = ids.iter().map(|a| a.to_string()).collect();
    sorted.sort();
    let first = env.agents_page(None, "", 3).await.unwrap();
    let rest = env.agents_page(None, &first[2].id, 3).await.unwrap();
    let seen: Vec<String> = first.iter().chain(&rest).map(|a| a.id.clone()).collect();
    assert_eq!(seen, sorted);
    let crashed = env.agents_page(Some("crashed"), "", 10).await.unwrap();
    assert_eq!(crashed.len(), 1);
    assert_eq!(crashed[0].id, ids[1].as_str());
    assert_eq!(crashed[0].end_reason.as_deref(), Some("trap"));
    let one = env.get_agent(ids[3].as_str()).await.unwrap();
    assert_eq!(one.replica, 3);
    assert!(matches!(
        env.get_agent("nobody").await,
        Err(EnvError::NotFound(_))
    ));
}

async fn holdings_page_by_resource_and_holder_and_waiters_in_line() {
    let t = open();
    let (env, a, b, c) = (&t.env, agent("a"), agent("b"), agent("c"));
    for r in ["src/a", "src/b", "src/c", "docs/x"] {
        env.reserve(&a, &res(&[r]), Mode::Shared, 10_000, 0)
            .await
            .unwrap();
    }
    env.reserve(&b, &res(&["src/b"]), Mode::Shared, 10_000, 0)
        .await
        .unwrap();
    let first = env.holdings_page("src/", None, None, 2).await.unwrap();
    let names: Vec<(&str, &str)> = first
        .iter()
        .map(|h| (h.resource.as_str(), h.holder.as_str()))
        .collect();
    assert_eq!(names, [("src/a", "a"), ("src/b", "a")]);
    let last = first.last().unwrap();
    let rest = env
        .holdings_page("src/", None, Some((&last.resource, last.lease)), 10)
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = rest
        .iter()
        .map(|h| (h.resource.as_str(), h.holder.as_str()))
        .collect();
    assert_eq!(names, [("src/b", "b"), ("src/c", "a")]);
    let of_b = env.holdings_page("", Some("b"), None, 10).await.unwrap();
    assert_eq!(of_b.len(), 1);
    // Two agents queue for an exclusive hold on src/; the first asked is first in line.
    let (e1, e2) = (env.clone(), env.clone());
    let (b2, c2) = (b.clone(), c.clone());
    let w1 = tokio::spawn(async move {
        e1.reserve(&b2, &res(&["src/"]), Mode::Exclusive, 1_000, 60_000)
            .await
    });
    common::eventually(async || env.waiters(10).await.unwrap().len() == 1).await;
    let w2 = tokio::spawn(async move {
        e2.reserve(&c2, &res(&["src/"]), Mode::Exclusive, 1_000, 60_000)
            .await
    });
    common::eventually(async || env.waiters(10).await.unwrap().len() == 2).await;
    let line = env.waiters(10).await.unwrap();
    assert_eq!(line[0].agent, "b");
    assert_eq!(line[1].agent, "c");
    assert_eq!(line[0].resources, ["src/"]);
    assert_eq!(line[0].mode, Mode::Exclusive);
    w1.abort();
    w2.abort();
}

async fn values_page_in_key_order_with_their_fence() {
    let t = open();
    let (env, a) = (&t.env, agent("a"));
    let lease = env
        .reserve(&a, &res(&["k"]), Mode::Exclusive, 10_000, 0)
        .await
        .unwrap();
    for k in ["cfg/b", "cfg/a", "cfg/c", "other"] {
        env.put_value(&a, k, "1", None, None).await.unwrap();
    }
    env.put_value(&a, "cfg/c", "2", None, Some(lease.token))
        .await
        .unwrap();
    let first = env.values_page("cfg/", "", 2).await.unwrap();
    assert_eq!(
        first.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(),
        ["cfg/a", "cfg/b"]
    );
    let rest = env.values_page("cfg/", "cfg/b", 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].key.as_str(), rest[0].version, rest[0].fence),
        ("cfg/c", 2, lease.token)
    );
    assert_eq!(first[0].fence, 0);
}

async fn event_pages_go_both_ways_filter_by_agent_and_stop_after_a_bounded_scan() {
    let t = open();
    let (env, a, b) = (&t.env, agent("a"), agent("b"));
    for i in 0..10 {
        let who = if i % 2 == 0 { &a } else { &b };
        env.put_value(who, &format!("k{i}"), "v", None, None)
            .await
            .unwrap();
    }
    let by_b = EventFilter {
        agent: Some("b".into()),
        ..EventFilter::default()
    };
    let newest = env.events_page(0, Direction::Back, &by_b, 3).await.unwrap();
    let keys: Vec<&str> = newest.events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(keys, ["value/k9", "value/k7", "value/k5"]);
    assert!(newest.more);
    let older = env
        .events_page(newest.scanned_to, Direction::Back, &by_b, 10)
        .await
        .unwrap();
    assert_eq!(older.events.len(), 2);
    assert!(!older.more);
    let forward = env
        .events_page(0, Direction::Forward, &EventFilter::default(), 4)
        .await
        .unwrap();
    assert_eq!(
        forward.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // A filter nothing matches looks at no more than the bound, then says where it got to.
    let n: Vec<u64> = (0..MAX_EVENTS_SCANNED + 500).collect();
    for chunk in n.chunks(2_000) {
        let pushes = chunk.iter().map(|i| {
            let (env, a) = (env.clone(), a.clone());
            async move {
                env.push(&a, "flood", &i.to_string(), PushOptions::default())
                    .await
            }
        });
        for pushed in join_all(pushes).await {
            pushed.unwrap();
        }
    }
    let nothing = EventFilter {
        kinds: vec!["no.such.kind".into()],
        ..EventFilter::default()
    };
    let page = env
        .events_page(0, Direction::Back, &nothing, 10)
        .await
        .unwrap();
    let head = env.latest_seq().await.unwrap();
    assert!(page.events.is_empty());
    assert!(page.more);
    assert_eq!(page.scanned_to, head - MAX_EVENTS_SCANNED + 1);
    // So does the agents' read, going forward: it answers with where it got
    // to, and reading on from there reaches the journal's end.
    let marked = EventFilter {
        kinds: vec!["value.".into()],
        subject_prefix: "value/last".into(),
        ..EventFilter::default()
    };
    env.put_value(&a, "last", "v", None, None).await.unwrap();
    let first = env.read_events_page(10, &marked, 100).await.unwrap();
    assert!(first.events.is_empty());
    assert!(first.more);
    assert_eq!(first.scanned_to, 10 + MAX_EVENTS_SCANNED);
    let rest = env
        .read_events_page(first.scanned_to, &marked, 100)
        .await
        .unwrap();
    assert_eq!(rest.events.len(), 1);
    assert!(!rest.more);
    // The tools' read and a wait read on, a bounded page at a time.
    assert_eq!(env.read_events(10, &marked, 100).await.unwrap().len(), 1);
    let waited = env.wait_events(10, &marked, 5_000).await.unwrap();
    assert_eq!(waited.len(), 1);
    assert_eq!(waited[0].subject, "value/last");
}

async fn an_operator_retries_a_dead_task_and_cancels_a_claimed_one() {
    let t = open();
    let (env, a, w) = (&t.env, agent("a"), agent("w"));
    let op = AgentId::operator();
    let once = PushOptions {
        max_attempts: 1,
        ..PushOptions::default()
    };
    let doomed = env.push(&a, "q", "1", once.clone()).await.unwrap().id;
    let child = env
        .push(
            &a,
            "q",
            "2",
            PushOptions {
                depends_on: vec![doomed],
                ..PushOptions::default()
            },
        )
        .await
        .unwrap()
        .id;
    let c = env.claim(&w, "q", 10_000, 0).await.unwrap().unwrap();
    env.fail(&w, c.id, c.token, "broke", true).await.unwrap();
    assert_eq!(env.get_task(doomed).await.unwrap().state, TaskState::Dead);
    assert_eq!(
        env.get_task(child).await.unwrap().state,
        TaskState::Cancelled
    );
    // The child waits on a dead task: retry that one first.
    let refused = env.retry_task(&op, child).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("retry task {doomed} first")),
        "{refused}"
    );
    let back = env.retry_task(&op, doomed).await.unwrap();
    assert_eq!((back.state, back.attempts), (TaskState::Ready, 0));
    let child_back = env.retry_task(&op, child).await.unwrap();
    assert_eq!(child_back.state, TaskState::Blocked);
    assert!(
        env.retry_task(&op, doomed).await.is_err(),
        "a ready task is not retried"
    );
    // Cancel the claimed retry: its holder can no longer complete it, and the child follows.
    let c = env.claim(&w, "q", 10_000, 0).await.unwrap().unwrap();
    assert_eq!(c.id, doomed);
    let cancelled = env.cancel_task(&op, doomed).await.unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert!(env.complete(&w, c.id, c.token, "late").await.is_err());
    assert_eq!(
        env.get_task(child).await.unwrap().state,
        TaskState::Cancelled
    );
    assert!(env.cancel_task(&op, doomed).await.is_err(), "already ended");
    let by_op: Vec<String> = env
        .read_events(
            0,
            &EventFilter {
                agent: Some("operator".into()),
                ..EventFilter::default()
            },
            100,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.kind, e.subject))
        .collect();
    assert_eq!(
        by_op,
        [
            format!("task.requeued task/{doomed}"),
            format!("task.requeued task/{child}"),
            format!("task.cancelled task/{doomed}"),
        ]
    );
}

async fn a_retried_task_waits_for_exactly_its_unfinished_dependencies() {
    let t = open();
    let (env, a, w) = (&t.env, agent("a"), agent("w"));
    let op = AgentId::operator();
    let deps = |ids: Vec<u64>| PushOptions {
        depends_on: ids,
        ..PushOptions::default()
    };
    let finish = async |queue: &str| {
        let c = env.claim(&w, queue, 10_000, 0).await.unwrap().unwrap();
        env.complete(&w, c.id, c.token, "").await.unwrap();
        c.id
    };
    // Cancelled while waiting for two; one finishes meanwhile; retried, it
    // waits for the other only.
    let first = env
        .push(&a, "one", "", PushOptions::default())
        .await
        .unwrap()
        .id;
    let second = env
        .push(&a, "two", "", PushOptions::default())
        .await
        .unwrap()
        .id;
    let both = env
        .push(&a, "then", "", deps(vec![first, second]))
        .await
        .unwrap()
        .id;
    env.cancel_task(&op, both).await.unwrap();
    assert_eq!(finish("one").await, first);
    assert_eq!(
        env.retry_task(&op, both).await.unwrap().state,
        TaskState::Blocked
    );
    assert_eq!(finish("two").await, second);
    assert_eq!(env.get_task(both).await.unwrap().state, TaskState::Ready);
    // Pushed onto a dead dependency (so cancelled), then both retried: it
    // becomes ready only once every dependency is done.
    let once = PushOptions {
        max_attempts: 1,
        ..PushOptions::default()
    };
    let dead = env.push(&a, "dies", "", once).await.unwrap().id;
    let c = env.claim(&w, "dies", 10_000, 0).await.unwrap().unwrap();
    env.fail(&w, c.id, c.token, "no", true).await.unwrap();
    let other = env
        .push(&a, "lives", "", PushOptions::default())
        .await
        .unwrap()
        .id;
    let late = env
        .push(&a, "later", "", deps(vec![dead, other]))
        .await
        .unwrap()
        .id;
    assert_eq!(
        env.get_task(late).await.unwrap().state,
        TaskState::Cancelled
    );
    env.retry_task(&op, dead).await.unwrap();
    assert_eq!(
        env.retry_task(&op, late).await.unwrap().state,
        TaskState::Blocked
    );
    assert_eq!(finish("lives").await, other);
    assert_eq!(env.get_task(late).await.unwrap().state, TaskState::Blocked);
    assert_eq!(finish("dies").await, dead);
    assert_eq!(env.get_task(late).await.unwrap().state, TaskState::Ready);
}

async fn signals_list_their_half_life() {
    let t = open();
    let (env, a) = (&t.env, agent("a"));
    env.deposit(&a, "trail/x", 8.0, Some(1_000)).await.unwrap();
    t.clock.advance(1_000);
    let s = env.strongest("trail/", 10).await.unwrap();
    assert_eq!(s[0].half_life_ms, 1_000);
    assert!((s[0].strength - 4.0).abs() < 1e-9);
}

every_backend!(
    overview_counts_tasks_per_queue_agents_and_live_leases,
    task_pages_follow_their_cursor_and_filters,
    a_tasks_story_is_every_event_about_it_and_its_links_both_ways,
    agent_pages_follow_ids_and_filter_by_state,
    holdings_page_by_resource_and_holder_and_waiters_in_line,
    values_page_in_key_order_with_their_fence,
    event_pages_go_both_ways_filter_by_agent_and_stop_after_a_bounded_scan,
    an_operator_retries_a_dead_task_and_cancels_a_claimed_one,
    a_retried_task_waits_for_exactly_its_unfinished_dependencies,
    signals_list_their_half_life,
);
