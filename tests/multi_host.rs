//! Several host processes on one environment file: a host killed mid-work is
//! reaped by the survivor, which finishes the work; and a wait in one
//! process is woken by a change made in another.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{KillOnDrop, agent, block, integrity_check, run_host, wait_for, wawe};
use wawe::env::{Env, EnvOptions, EventFilter, TaskState};

fn write_manifest(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_host_killed_mid_work_is_reaped_and_the_survivor_finishes_every_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let worker = agent("worker");
    let worker = worker.display();
    let victim = write_manifest(
        dir.path(),
        "victim.toml",
        &format!(
            "[agents.worker]\nmodule = \"{worker}\"\nreplicas = 3\n[agents.worker.config]\nwork_scale = \"400000\"\n"
        ),
    );
    let survivor = write_manifest(
        dir.path(),
        "survivor.toml",
        &format!(
            "[agents.producer]\nmodule = \"{}\"\n[agents.producer.config]\ntasks = \"40\"\nmax_attempts = \"8\"\n\n\
             [agents.worker]\nmodule = \"{worker}\"\nreplicas = 2\n[agents.worker.config]\nwork_scale = \"400000\"\n",
            agent("producer").display()
        ),
    );
    let mut victim = run_host(dir.path(), &victim, &db);
    let env = wait_for("the environment", Duration::from_secs(60), || {
        Env::open_existing(&db, EnvOptions::default()).ok()
    });
    wait_for("the victim's workers", Duration::from_secs(60), || {
        (block(env.list_agents())
            .ok()?
            .iter()
            .filter(|a| a.state == "running")
            .count()
            == 3)
            .then_some(())
    });
    let mut survivor = run_host(dir.path(), &survivor, &db);

    // Kill the victim while it holds claimed tasks, some work already done.
    let victim_host = wait_for("the victim to be mid-work", Duration::from_secs(60), || {
        let tasks = block(env.list_tasks(None, None, 1_000)).ok()?;
        let done = tasks.iter().filter(|t| t.state == TaskState::Done).count();
        let claimed_by_victim: Vec<_> = tasks
            .iter()
            .filter_map(|t| t.claimed_by.clone())
            .filter(|by| by.contains(&format!("-{}-", victim.0.id())))
            .collect();
        (done >= 3 && !claimed_by_victim.is_empty())
            .then(|| claimed_by_victim[0].split('@').nth(1).unwrap().to_string())
    });
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();

    let status = wait_for("the survivor to finish", Duration::from_secs(120), || {
        survivor.0.try_wait().unwrap()
    });
    assert!(status.success(), "the survivor failed: {status}");

    let tasks = block(env.list_tasks(None, None, 1_000)).unwrap();
    assert_eq!(tasks.len(), 40);
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:?}"
    );
    // Each task completed exactly once: a stale claim never completed anything.
    let completed = EventFilter {
        kinds: vec!["task.completed".into()],
        ..Default::default()
    };
    let mut per_task: BTreeMap<String, u32> = BTreeMap::new();
    for e in block(env.read_events(0, &completed, 10_000)).unwrap() {
        *per_task.entry(e.subject).or_default() += 1;
    }
    assert_eq!(per_task.len(), 40);
    assert!(per_task.values().all(|&n| n == 1), "{per_task:?}");
    // The dead host was reaped: its agents lost, nothing of theirs still held.
    let hosts = block(env.list_hosts()).unwrap();
    assert_eq!(
        hosts.iter().find(|h| h.id == victim_host).unwrap().state,
        "lost"
    );
    let agents = block(env.list_agents()).unwrap();
    assert!(
        agents
            .iter()
            .filter(|a| a.host == victim_host)
            .all(|a| a.state == "lost")
    );
    assert!(block(env.list_reservations("")).unwrap().is_empty());
    assert_eq!(integrity_check(&db), "ok");
}

#[test]
fn a_claim_waiting_in_one_process_is_woken_by_a_push_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let child = wawe(dir.path())
        .arg("run")
        .arg(agent("hello"))
        .args(["--config", "idle_ms=600000", "--quiet", "--env"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _host = KillOnDrop(child);
    let env = wait_for("the environment", Duration::from_secs(60), || {
        Env::open_existing(&db, EnvOptions::default()).ok()
    });
    wait_for("the agent to wait", Duration::from_secs(60), || {
        block(env.list_agents())
            .ok()?
            .iter()
            .any(|a| a.state == "running")
            .then_some(())
    });
    let out = wawe(dir.path())
        .args(["env", "push", "greetings", r#"{"name":"ada"}"#, "--env"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let done = EventFilter {
        kinds: vec!["task.completed".into()],
        ..Default::default()
    };
    let event = wait_for(
        "the waiting agent to take the task",
        Duration::from_secs(30),
        || {
            block(env.read_events(0, &done, 10))
                .ok()?
                .into_iter()
                .next()
        },
    );
    assert!(event.agent.starts_with("hello.0@"), "{event:?}");
    assert_eq!(
        block(env.get_value("greetings/ada"))
            .unwrap()
            .unwrap()
            .value,
        "hello, ada"
    );
}
