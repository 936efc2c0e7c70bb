//! End-to-end tests of the runtime: real agent components (built by the host's
//! build script) in a real host against a real database file.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::agent;
use wawe::env::{AgentId, Env, EnvOptions, EventFilter, Mode, PushOptions, TaskState};
use wawe::runtime::{AgentSpec, Host, Limits, RestartPolicy, RunEnd, Runtime, RuntimeOptions};

struct Harness {
    _dir: tempfile::TempDir,
    env: Env,
    runtime: Runtime,
    host: Host,
}

fn options() -> RuntimeOptions {
    RuntimeOptions {
        // Shared by the tests, so each module is compiled once per test run.
        cache_dir: Some(support::cache_dir()),
        restart_backoff: Duration::from_millis(10),
        restart_backoff_max: Duration::from_millis(50),
        ..RuntimeOptions::default()
    }
}

async fn harness_with(options: RuntimeOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path().join("env.db"), EnvOptions::default()).unwrap();
    let runtime = Runtime::new(options).unwrap();
    let host = runtime.start(env.clone()).await.unwrap();
    Harness {
        _dir: dir,
        env,
        runtime,
        host,
    }
}

async fn harness() -> Harness {
    harness_with(options()).await
}

fn spec(name: &str, config: &[(&str, &str)], restart: RestartPolicy, limits: Limits) -> AgentSpec {
    AgentSpec {
        name: name.to_string(),
        replica: 0,
        limits,
        restart,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        grants: Default::default(),
    }
}

impl Harness {
    async fn run(&self, module: &str, spec: AgentSpec) -> RunEnd {
        let m = self.runtime.load(&agent(module)).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(60), self.host.spawn(&m, spec).join());
        end.await.expect("the agent did not end within a minute")
    }

    async fn push(&self, queue: &str, payload: &str) -> u64 {
        let me = AgentId::new("test");
        self.env
            .push(&me, queue, payload, PushOptions::default())
            .await
            .unwrap()
            .id
    }

    async fn agent_row(&self, name: &str) -> wawe::env::AgentInfo {
        self.env
            .list_agents()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name}"))
    }
}

fn crashed(end: &RunEnd) -> &str {
    match end {
        RunEnd::Crashed(why) => why,
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_refuses_files_sockets_and_environment_variables() {
    let h = harness().await;
    for mode in ["read-file", "socket", "env-var"] {
        let end = h
            .run(
                "intruder",
                spec(
                    &format!("intruder-{mode}"),
                    &[("mode", mode)],
                    RestartPolicy::Never,
                    Limits::default(),
                ),
            )
            .await;
        assert_eq!(
            end,
            RunEnd::Exited,
            "{mode}: the intruder reports what got through"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_release_anothers_lease_or_complete_anothers_task() {
    let h = harness().await;
    let holder = AgentId::new("holder");
    let lease = h
        .env
        .reserve(
            &holder,
            &["precious".to_string()],
            Mode::Exclusive,
            60_000,
            0,
        )
        .await
        .unwrap();
    let id = h.push("work", "{}").await;
    let claim = h
        .env
        .claim(&holder, "work", 60_000, 0)
        .await
        .unwrap()
        .unwrap();
    for mode in ["release-other", "complete-other"] {
        let end = h
            .run(
                "intruder",
                spec(
                    &format!("intruder-{mode}"),
                    &[("mode", mode)],
                    RestartPolicy::Never,
                    Limits::default(),
                ),
            )
            .await;
        assert_eq!(end, RunEnd::Exited, "{mode}");
    }
    let held = h.env.list_reservations("precious").await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].lease, held[0].holder.as_str()),
        (lease.id, "holder")
    );
    let task = h.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Claimed);
    assert_eq!(task.claimed_by.as_deref(), Some("holder"));
    h.env
        .complete(&holder, id, claim.token, "mine")
        .await
        .unwrap();
}

/// Push one task naming `resource`, run chaos in `mode` on it, and check the
/// host cleaned up after the crash: lease released, task back in the queue.
async fn crash_and_check(h: &Harness, mode: &str, limits: Limits) -> String {
    let resource = format!("res/{mode}");
    let id = h
        .push("work", &format!(r#"{{"resources":["{resource}"]}}"#))
        .await;
    let name = format!("chaos-{mode}");
    let end = h
        .run(
            "chaos",
            spec(&name, &[("mode", mode)], RestartPolicy::Never, limits),
        )
        .await;
    let why = crashed(&end).to_string();
    assert!(
        h.env.list_reservations(&resource).await.unwrap().is_empty(),
        "{mode}: lease still held"
    );
    let task = h.env.get_task(id).await.unwrap();
    assert_eq!(task.state, TaskState::Ready, "{mode}: task not put back");
    assert_eq!(task.attempts, 1);
    let row = h.agent_row(&name).await;
    assert_eq!(row.state, "crashed");
    assert_eq!(row.end_reason.as_deref(), Some(why.as_str()));
    why
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_recorded_with_its_message_and_a_backtrace() {
    let h = harness().await;
    let why = crash_and_check(&h, "panic", Limits::default()).await;
    assert!(
        why.starts_with("panicked: chaos: deliberate panic"),
        "{why}"
    );
    assert!(why.contains("wasm backtrace"), "{why}");
    assert!(
        why.contains("chaos::Chaos"),
        "the backtrace has function names: {why}"
    );
    assert!(
        why.contains("chaos"),
        "the backtrace names the agent's functions: {why}"
    );
    let ended = EventFilter {
        kinds: vec!["agent.ended".into()],
        ..Default::default()
    };
    let events = h.env.read_events(0, &ended, 10).await.unwrap();
    assert!(events[0].detail.contains("deliberate panic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_releases_the_lease_and_requeues_the_task() {
    let h = harness().await;
    let why = crash_and_check(&h, "trap", Limits::default()).await;
    assert!(why.contains("unreachable"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_is_stopped_at_the_limit() {
    let h = harness().await;
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let why = crash_and_check(&h, "memory", limits).await;
    assert!(why.contains("memory limit of 16.0 MiB"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_ended_by_its_cpu_limit_while_others_progress() {
    let h = harness().await;
    let spinner = {
        let id = h.push("spin", r#"{"resources":["res/loop"]}"#).await;
        let m = h.runtime.load(&agent("chaos")).unwrap();
        let limits = Limits {
            cpu: Some(Duration::from_millis(1500)),
            ..Limits::default()
        };
        let handle = h.host.spawn(
            &m,
            spec(
                "chaos-loop",
                &[("mode", "loop"), ("queue", "spin")],
                RestartPolicy::Never,
                limits,
            ),
        );
        (id, handle)
    };
    // While it spins, another agent gets through its work.
    for n in 0..20 {
        h.push("greetings", &format!(r#"{{"name":"n{n}"}}"#)).await;
    }
    let greeter = h
        .run(
            "hello",
            spec(
                "hello",
                &[("idle_ms", "200")],
                RestartPolicy::Never,
                Limits::default(),
            ),
        )
        .await;
    assert_eq!(greeter, RunEnd::Exited);
    assert_eq!(
        h.env
            .list_tasks(Some("greetings"), Some(TaskState::Done), 100)
            .await
            .unwrap()
            .len(),
        20
    );
    let (id, handle) = spinner;
    let end = tokio::time::timeout(Duration::from_secs(60), handle.join())
        .await
        .unwrap();
    let why = crashed(&end);
    assert!(why.contains("CPU limit"), "{why}");
    assert!(
        h.env
            .list_reservations("res/loop")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.env.get_task(id).await.unwrap().state, TaskState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_limit_ends_a_run() {
    let h = harness().await;
    let limits = Limits {
        wall: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let why = crash_and_check(&h, "loop", limits).await;
    assert!(why.contains("wall-clock limit of 300ms"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_never_runs_once() {
    let h = harness().await;
    h.push("work", "{}").await;
    let end = h
        .run(
            "chaos",
            spec(
                "c",
                &[("mode", "error")],
                RestartPolicy::Never,
                Limits::default(),
            ),
        )
        .await;
    assert!(
        matches!(end, RunEnd::Failed(ref m) if m.contains("deliberate error")),
        "{end:?}"
    );
    assert_eq!(h.host.counters().restarts, 0);
    assert_eq!(h.agent_row("c").await.state, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_does_not_restart_a_clean_exit() {
    let h = harness().await;
    h.push("work", "{}").await;
    let end = h
        .run(
            "chaos",
            spec(
                "c",
                &[("mode", "exit")],
                RestartPolicy::OnFailure,
                Limits::default(),
            ),
        )
        .await;
    assert_eq!(end, RunEnd::Exited);
    assert_eq!(h.host.counters().restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_with_backoff_until_a_crash_loop_gives_up() {
    let h = harness_with(RuntimeOptions {
        crash_loop_restarts: 3,
        ..options()
    })
    .await;
    for _ in 0..10 {
        h.push("work", "{}").await;
    }
    let end = h
        .run(
            "chaos",
            spec(
                "c",
                &[("mode", "panic")],
                RestartPolicy::OnFailure,
                Limits::default(),
            ),
        )
        .await;
    crashed(&end);
    let c = h.host.counters();
    assert_eq!((c.crashed, c.restarts, c.gave_up), (4, 3, 1));
    let row = h.agent_row("c").await;
    assert_eq!(row.state, "failed");
    assert_eq!(row.restarts, 3);
    assert!(row.end_reason.unwrap().contains("crash loop"));
    let gave_up = EventFilter {
        kinds: vec!["agent.gave-up".into()],
        ..Default::default()
    };
    assert_eq!(h.env.read_events(0, &gave_up, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_a_clean_exit_until_stopped() {
    let h = harness().await;
    for _ in 0..3 {
        h.push("work", "{}").await;
    }
    let m = h.runtime.load(&agent("chaos")).unwrap();
    let handle = h.host.spawn(
        &m,
        spec(
            "c",
            &[("mode", "exit")],
            RestartPolicy::Always,
            Limits::default(),
        ),
    );
    let env = h.env.clone();
    wait_until(async || {
        env.list_tasks(Some("work"), Some(TaskState::Done), 10)
            .await
            .unwrap()
            .len()
            == 3
    })
    .await;
    handle.stop();
    let end = handle.join().await;
    assert!(matches!(end, RunEnd::Stopped | RunEnd::Exited), "{end:?}");
    assert!(h.host.counters().exited >= 3);
    assert!(h.host.counters().restarts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_agent_releases_its_lease_and_returns_its_task() {
    let h = harness().await;
    let id = h.push("work", r#"{"resources":["res/held"]}"#).await;
    let m = h.runtime.load(&agent("chaos")).unwrap();
    // lease_ms 1000: only the host's keepalive keeps the lease alive this long.
    let handle = h.host.spawn(
        &m,
        spec(
            "c",
            &[("mode", "loop"), ("lease_ms", "1000")],
            RestartPolicy::Always,
            Limits::default(),
        ),
    );
    let env = h.env.clone();
    wait_until(async || !env.list_reservations("res/held").await.unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        h.env.list_reservations("res/held").await.unwrap().len(),
        1,
        "keepalive renews the lease of a live agent"
    );
    handle.stop();
    assert_eq!(handle.join().await, RunEnd::Stopped);
    assert!(
        h.env
            .list_reservations("res/held")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.env.get_task(id).await.unwrap().state, TaskState::Ready);
    assert_eq!(h.agent_row("c").await.state, "stopped");
}

async fn wait_until(mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_modules_are_cached_by_digest_and_a_bad_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..options()
    })
    .unwrap();
    let module = runtime.load(&agent("hello")).unwrap();
    let hex = module.digest.trim_start_matches("sha256:");
    let cached: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(hex) && name.ends_with(".cwasm"), "{name}");
    // A second load (a second run) uses the cached file as it is.
    let stamp = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    let again = runtime.load(&agent("hello")).unwrap();
    assert_eq!(again.digest, module.digest);
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        stamp
    );
    // A damaged cache entry is not trusted: the module is compiled again.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let h = harness_with(RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..options()
    })
    .await;
    let m = h.runtime.load(&agent("hello")).unwrap();
    h.push("greetings", r#"{"name":"cache"}"#).await;
    let end = tokio::time::timeout(
        Duration::from_secs(60),
        h.host
            .spawn(
                &m,
                spec(
                    "hello",
                    &[("idle_ms", "100")],
                    RestartPolicy::Never,
                    Limits::default(),
                ),
            )
            .join(),
    )
    .await
    .unwrap();
    assert_eq!(end, RunEnd::Exited);
    assert!(
        std::fs::read(&cached[0]).unwrap().len() > 1000,
        "the cache entry was rewritten"
    );
}

// Hostile agents (SECURITY.md lists each with what stops it).

/// Run the intruder in `mode` (with `extra` config) under `limits` to its end.
async fn intrude(h: &Harness, mode: &str, extra: &[(&str, &str)], limits: Limits) -> RunEnd {
    let mut config = vec![("mode", mode)];
    config.extend_from_slice(extra);
    let name = format!("intruder-{mode}");
    h.run(
        "intruder",
        spec(&name, &config, RestartPolicy::Never, limits),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_payloads_are_refused_and_nothing_is_stored() {
    let h = harness().await;
    let end = intrude(&h, "huge-payload", &[], Limits::default()).await;
    assert_eq!(end, RunEnd::Exited, "the intruder reports what got through");
    let stats = h.env.stats().await.unwrap();
    assert_eq!((stats.learnings, stats.values), (0, 0), "{stats:?}");
    assert!(
        h.env
            .list_tasks(Some("intruder"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_full_text_attacks_are_taken_as_plain_text_and_every_write_is_its_own() {
    let h = harness().await;
    let end = intrude(&h, "injection", &[], Limits::default()).await;
    assert_eq!(end, RunEnd::Exited, "the intruder reports what got through");
    // Stored under exactly the text given, and nothing else was touched.
    let v = h
        .env
        .get_value("' OR '1'='1")
        .await
        .unwrap()
        .expect("stored as plain text");
    assert_eq!(v.value, "v");
    assert!(
        h.env
            .get_value("x'); DROP TABLE tasks; --")
            .await
            .unwrap()
            .is_some()
    );
    let id = h.push("still-works", "{}").await;
    assert_eq!(h.env.get_task(id).await.unwrap().state, TaskState::Ready);
    assert_eq!(support::integrity_check(h.env.file().unwrap()), "ok");
    // No identity can be named in a call: every change it made is recorded
    // under the identity its host gave it.
    let me = h.agent_row("intruder-injection").await.id;
    let filter = EventFilter {
        kinds: ["task.", "value.", "learning.", "signal.", "lease."]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let events = h.env.read_events(0, &filter, 10_000).await.unwrap();
    let by_others: Vec<_> = events
        .iter()
        .filter(|e| e.agent != me && e.agent != "test" && e.agent != "env")
        .collect();
    assert!(!events.is_empty());
    assert!(
        by_others.is_empty(),
        "written under other names: {by_others:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_stopped_at_its_quota_with_the_quota_as_the_reason() {
    let h = harness().await;
    let cases = [
        (
            "tasks",
            Limits {
                max_pushes: Some(300),
                ..Limits::default()
            },
            "quota of 300 task pushes",
        ),
        (
            "learnings",
            Limits {
                max_learnings: Some(100),
                ..Limits::default()
            },
            "quota of 100 learnings",
        ),
        (
            "signals",
            Limits {
                max_writes: Some(200),
                ..Limits::default()
            },
            "quota of 200 writes",
        ),
        (
            "values",
            Limits {
                max_writes: Some(200),
                ..Limits::default()
            },
            "quota of 200 writes",
        ),
    ];
    for (what, limits, reason) in cases {
        let name = format!("flood-{what}");
        let spec = spec(
            &name,
            &[("mode", "flood"), ("what", what)],
            RestartPolicy::Never,
            limits,
        );
        let end = h.run("intruder", spec).await;
        let why = crashed(&end);
        assert!(why.contains(reason), "{what}: {why}");
        let recorded = h.agent_row(&name).await.end_reason.unwrap_or_default();
        assert!(recorded.contains(reason), "{what}: recorded {recorded:?}");
    }
    let stats = h.env.stats().await.unwrap();
    assert_eq!(stats.learnings, 100, "{stats:?}");
    assert_eq!(stats.values, 200, "{stats:?}");
    assert_eq!(
        h.env
            .list_tasks(Some("flood"), None, 10_000)
            .await
            .unwrap()
            .len(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_past_its_rate_is_throttled_while_others_keep_going() {
    let h = harness().await;
    let rate = 100;
    let wall = Duration::from_millis(1500);
    let flood = {
        let limits = Limits {
            calls_per_second: rate,
            wall: Some(wall),
            ..Limits::default()
        };
        let spec = spec(
            "flood-values",
            &[("mode", "flood"), ("what", "values")],
            RestartPolicy::Never,
            limits,
        );
        let m = h.runtime.load(&agent("intruder")).unwrap();
        h.host.spawn(&m, spec)
    };
    // A well-behaved agent alongside finishes its work.
    for name in ["ada", "bo", "cy"] {
        h.push("greetings", &format!("{{\"name\":\"{name}\"}}"))
            .await;
    }
    let hello = spec(
        "hello",
        &[("idle_ms", "300")],
        RestartPolicy::Never,
        Limits::default(),
    );
    assert_eq!(h.run("hello", hello).await, RunEnd::Exited);
    for name in ["ada", "bo", "cy"] {
        assert!(
            h.env
                .get_value(&format!("greetings/{name}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    let end = flood.join().await;
    assert!(crashed(&end).contains("wall-clock limit"), "{end:?}");
    // At most a burst of one second's calls plus the rate over the run (the
    // hello agent's three greetings are values too).
    let written = h.env.stats().await.unwrap().values - 3;
    // Slack for a late timer; a quota that did not hold would write thousands.
    let most = u64::from(rate) + (f64::from(rate) * wall.as_secs_f64()) as u64 + 50;
    assert!(
        written <= most,
        "{written} values written at {rate}/s (at most {most})"
    );
    assert!(written > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_recursion_traps_and_ends_only_its_own_run() {
    let h = harness().await;
    let end = intrude(&h, "deep-recursion", &[], Limits::default()).await;
    let why = crashed(&end);
    // The guest's stack lives in its own linear memory: running off its end
    // is an out-of-bounds access, a trap that ends the run (the engine's own
    // limit on the wasm call stack would end deeper native frames).
    assert!(
        why.contains("wasm trap") && why.contains("recurse"),
        "{why}"
    );
    let h2 = h.push("after", "{}").await;
    assert_eq!(h.env.get_task(h2).await.unwrap().state, TaskState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_at_a_per_run_quota_is_not_restarted() {
    let h = harness().await;
    let limits = Limits {
        max_pushes: Some(50),
        ..Limits::default()
    };
    let spec = spec(
        "flood-again",
        &[("mode", "flood"), ("what", "tasks")],
        RestartPolicy::Always,
        limits,
    );
    let end = h.run("intruder", spec).await;
    assert!(crashed(&end).contains("quota of 50 task pushes"), "{end:?}");
    // One run's worth, not one per restart.
    let pushed = h
        .env
        .list_tasks(Some("flood"), None, 1_000)
        .await
        .unwrap()
        .len();
    assert_eq!(pushed, 50);
    let row = h.agent_row("flood-again").await;
    assert_eq!(row.restarts, 0);
    assert!(
        row.end_reason
            .unwrap_or_default()
            .contains("not restarting"),
        "the reason says why it stays down"
    );
}
