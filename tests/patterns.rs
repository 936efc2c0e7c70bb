//! The coordination patterns of the guide (`docs/agents.md`), each run as
//! its manifest in `docs/patterns/` says, crash included, and checked for
//! the outcome the guide promises.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{block, wawe};
use wawe::env::{Env, EnvOptions, TaskState};

/// The manifest of pattern `name`.
fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/patterns/{name}.toml"))
}

/// Runs pattern `name` on a fresh environment in a temporary directory;
/// checks that the run succeeded and that an agent crashed on the way.
/// Returns the environment (the directory lives as long as it).
fn run_pattern(name: &str) -> (tempfile::TempDir, Env) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(format!("{name}.db"));
    let out = wawe(dir.path())
        .arg("run")
        .arg(manifest(name))
        .arg("--env")
        .arg(&db)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        summary["runs"]["crashed"].as_u64().unwrap() >= 1,
        "{name}: the crash case did not crash: {summary}"
    );
    assert_eq!(summary["leases_held"], 0, "{name}: {summary}");
    let env = Env::open_existing(&db, EnvOptions::default()).unwrap();
    (dir, env)
}

fn value(env: &Env, key: &str) -> Option<String> {
    block(env.get_value(key)).unwrap().map(|v| v.value)
}

fn json(env: &Env, key: &str) -> Value {
    let text = value(env, key).unwrap_or_else(|| panic!("no value {key}"));
    serde_json::from_str(&text).unwrap()
}

fn all_tasks_done(env: &Env) -> Vec<wawe::env::Task> {
    let tasks = block(env.list_tasks(None, None, 10_000)).unwrap();
    assert!(!tasks.is_empty());
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:#?}"
    );
    tasks
}

#[test]
fn pool_does_every_job_even_when_a_worker_crashes_before_completing() {
    let (_dir, env) = run_pattern("pool");
    let tasks = all_tasks_done(&env);
    assert_eq!(tasks.len(), 20);
    for n in 1..=20u64 {
        assert_eq!(
            value(&env, &format!("pool/result/{n}")),
            Some((n * n).to_string())
        );
    }
    // The crashed job was done again, by a second attempt.
    assert!(tasks.iter().any(|t| t.attempts == 2), "{tasks:#?}");
}

#[test]
fn pipeline_delivers_every_item_once_despite_a_crash_between_push_and_complete() {
    let (_dir, env) = run_pattern("pipeline");
    all_tasks_done(&env);
    for item in 1..=20u64 {
        assert_eq!(
            value(&env, &format!("pipeline/out/{item}")),
            Some((item * 2).to_string())
        );
    }
    let doubled = block(env.list_tasks(Some("pipeline/doubled"), None, 1000)).unwrap();
    // A duplicate push may get through (then `store` wrote the same value
    // twice), but never more than the one crash accounts for.
    assert!((20..=21).contains(&doubled.len()), "{doubled:#?}");
}

#[test]
fn mapreduce_counts_exactly_when_a_mapper_crashes_before_completing() {
    let (_dir, env) = run_pattern("mapreduce");
    all_tasks_done(&env);
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(manifest("mapreduce")).unwrap()).unwrap();
    let text = manifest["agents"]["seed"]["config"]["text"]
        .as_str()
        .unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for word in text.split_whitespace() {
        *expected.entry(word.to_lowercase()).or_default() += 1;
    }
    let counts: BTreeMap<String, u64> =
        serde_json::from_value(json(&env, "mapreduce/counts")).unwrap();
    assert_eq!(counts, expected);
    // The crashed map task was retried; the barrier waited for it.
    let maps = block(env.list_tasks(Some("mapreduce/map"), None, 100)).unwrap();
    assert!(maps.iter().any(|t| t.attempts == 2), "{maps:#?}");
}

#[test]
fn election_hands_the_lease_on_when_the_leader_crashes_mid_term() {
    let (_dir, env) = run_pattern("election");
    let terms = json(&env, "election/terms");
    let terms = terms.as_array().unwrap();
    let leaders: Vec<&str> = terms
        .iter()
        .map(|t| t["leader"].as_str().unwrap())
        .collect();
    let tokens: Vec<u64> = terms.iter().map(|t| t["token"].as_u64().unwrap()).collect();
    // Four candidates, one term each, plus the term the crash cut short.
    assert_eq!(terms.len(), 5, "{terms:?}");
    assert_eq!(
        leaders.iter().filter(|l| **l == "b").count(),
        2,
        "{leaders:?}"
    );
    // One leader at a time: every new term holds a newer token.
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    let last = json(&env, "election/leader");
    assert_eq!(last["token"].as_u64(), tokens.last().copied());
}

#[test]
fn backpressure_keeps_the_producer_within_the_credit_consumers_grant() {
    let (_dir, env) = run_pattern("backpressure");
    let tasks = all_tasks_done(&env);
    assert_eq!(tasks.len(), 40);
    let report = json(&env, "backpressure/max-outstanding");
    // window 2 × (3 consumers + 1 restart after the crash)
    let most = report["items"].as_u64().unwrap();
    assert!((1..=8).contains(&most), "{report}");
    assert!(report["waits_for_credit"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn counter_loses_no_increment_and_counts_none_twice_across_a_crash() {
    let (_dir, env) = run_pattern("counter");
    let counter = json(&env, "counter/total");
    assert_eq!(counter["total"], 150, "{counter}");
    for me in ["a", "b", "c"] {
        assert_eq!(counter["by"][me], 50, "{counter}");
    }
}
