//! `wawe bench`: every workload runs end to end at a tiny size and reports
//! what it measured. No timing is asserted (the machines are shared and
//! noisy); the checks are on what was run and counted.

mod support;

use serde_json::Value;

/// Run `wawe bench ARGS --json` and parse its one line of JSON.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = support::wawe(dir.path())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wawe bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite())
}

#[test]
fn bench_tasks_runs_all_three_modes_and_reports_their_ratios() {
    let r = bench(&["tasks", "--agents", "4", "--tasks", "42"]);
    assert_eq!(r["tasks"], 40, "rounded down to a multiple of the agents");
    assert_eq!(r["durability"], "normal");
    for mode in ["wasm", "native", "naive"] {
        assert!(positive(&r[mode]["rate_per_s"]), "{mode}: {r}");
    }
    // Without group commit every operation is its own transaction.
    assert_eq!(r["naive"]["commits_per_unit"], 3.0);
    assert!(positive(&r["wasm_vs_native"]) && positive(&r["wasm_vs_naive"]));
}

#[test]
fn bench_tasks_can_run_one_mode_at_full_durability() {
    let r = bench(&[
        "tasks",
        "--agents",
        "2",
        "--tasks",
        "10",
        "--only",
        "native",
        "--durability",
        "full",
    ]);
    assert_eq!(r["durability"], "full");
    assert!(positive(&r["native"]["rate_per_s"]));
    assert!(r["wasm"].is_null() && r["wasm_vs_native"].is_null());
}

#[test]
fn bench_reservations_runs_both_scenarios_in_both_modes_and_counts_queueing() {
    let r = bench(&[
        "reservations",
        "--agents",
        "4",
        "--rounds",
        "40",
        "--shared",
        "1",
    ]);
    let runs = r["runs"].as_array().unwrap();
    let names: Vec<_> = runs
        .iter()
        .map(|run| format!("{} {}", run["scenario"], run["mode"]))
        .collect();
    assert_eq!(
        names,
        [
            r#""disjoint" "wasm""#,
            r#""disjoint" "native""#,
            r#""overlapping" "wasm""#,
            r#""overlapping" "native""#
        ]
    );
    let mut queued = 0;
    for run in runs {
        assert!(positive(&run["rate"]["rate_per_s"]), "{run}");
        if run["scenario"] == "disjoint" {
            assert_eq!(run["waited"], 0, "own resources never conflict: {run}");
        } else {
            queued += run["waited"].as_u64().unwrap();
        }
    }
    assert!(queued > 0, "callers sharing one resource never queued: {r}");
}

#[test]
fn bench_spawn_measures_instantiation_and_memory_per_live_agent() {
    let r = bench(&["spawn", "--agents", "5,300"]);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    // Largest first: only the first run starts from a clean process.
    for (run, agents) in runs.iter().zip([300, 5]) {
        assert_eq!(run["agents"], agents);
        assert_eq!(
            run["instantiation"]["samples"], agents,
            "one instantiation per agent: {run}"
        );
        assert!(positive(&run["instantiation"]["p50_us"]), "{run}");
        assert!(run["resident_kib_per_agent"].as_f64().is_some(), "{run}");
    }
    // Live agents' memories and stacks are slots of shared mappings: 300 of
    // them add fewer than one each (threads and allocator arenas started on
    // the way account for what there is), not the 4.8 a stack and a memory
    // of their own cost each.
    let many = &runs[0]["mappings_per_agent"];
    assert!(many.as_f64().is_some_and(|m| m < 1.0), "{}", runs[0]);
}

#[test]
fn bench_wake_measures_waiters_in_this_process_and_another() {
    let r = bench(&["wake", "--rounds", "5"]);
    assert_eq!(r["durability"], "normal");
    for waiter in ["same_process", "other_process"] {
        assert_eq!(r[waiter]["samples"], 5, "{r}");
        assert!(positive(&r[waiter]["p50_us"]), "{r}");
    }
}

#[test]
fn bench_swarm_runs_64_agents_and_many_and_wakes_only_targeted() {
    let r = bench(&[
        "swarm",
        "--agents",
        "200",
        "--queues",
        "20",
        "--tasks",
        "400",
        "--wake-rounds",
        "20",
    ]);
    for run in ["small", "large"] {
        assert_eq!(r[run]["tasks"], 400, "{r}");
        assert!(positive(&r[run]["throughput"]["rate_per_s"]), "{run}: {r}");
        assert!(positive(&r[run]["cpu_us_per_task"]), "{run}: {r}");
        // Every agent was waiting in the wake-up phase: each push woke one.
        assert_eq!(r[run]["wake"]["samples"], 20, "{run}: {r}");
        assert_eq!(r[run]["wakes"]["general"], 0, "{run}: {r}");
    }
    assert_eq!(r["small"]["agents"], 64, "{r}");
    assert_eq!(r["large"]["agents"], 200, "{r}");
    assert_eq!(r["large"]["queues"], 20, "{r}");
    assert!(positive(&r["throughput_ratio"]), "{r}");
}

#[test]
fn bench_workspace_writes_through_the_workspace_and_plainly() {
    let r = bench(&[
        "workspace",
        "--agents",
        "4",
        "--writes",
        "42",
        "--size",
        "64",
    ]);
    assert_eq!(r["writes"], 44, "rounded up to a multiple of the agents");
    for mode in ["guarded", "plain", "plain_atomic"] {
        assert!(positive(&r[mode]["rate_per_s"]), "{mode}: {r}");
    }
    // Every guarded write was its own journaled operation.
    assert!(positive(&r["guarded"]["commits_per_unit"]), "{r}");
    assert!(positive(&r["guarded_vs_plain"]), "{r}");
}

#[test]
fn bench_tasks_with_pages_runs_wasm_again_while_pages_follow_the_stream() {
    let r = bench(&[
        "tasks", "--agents", "4", "--tasks", "400", "--only", "wasm", "--pages", "3",
    ]);
    let p = &r["with_pages"];
    assert_eq!(p["pages"], 3, "{r}");
    assert!(positive(&p["wasm"]["rate_per_s"]), "{r}");
    assert!(p["slowdown"].is_f64(), "{r}");
    assert!(
        p["frames"].as_u64().unwrap() >= 3,
        "every page got frames: {r}"
    );
}

#[test]
fn bench_ui_fills_an_environment_and_times_every_request_of_the_view() {
    let r = bench(&[
        "ui", "--agents", "20", "--tasks", "200", "--events", "2000", "--pages", "2",
    ]);
    assert!(r["agents"].as_u64().unwrap() >= 20, "{r}");
    assert!(r["tasks"].as_u64().unwrap() >= 200, "{r}");
    assert!(r["events"].as_u64().unwrap() >= 2000, "{r}");
    let requests = r["requests"].as_array().unwrap();
    assert!(requests.len() >= 10, "{r}");
    for t in requests {
        assert_eq!(t["latency"]["samples"], 20, "{t}");
        assert!(t["bytes"].as_u64().unwrap() > 0, "{t}");
    }
    let story = requests
        .iter()
        .find(|t| t["path"].as_str().unwrap().starts_with("/api/tasks/"))
        .unwrap();
    assert!(
        story["bytes"].as_u64().unwrap() > 200,
        "the story holds its events: {story}"
    );
    assert_eq!(r["update"]["samples"], 20, "{r}");
    assert!(positive(&r["first_paint"]["p50_us"]));
}
