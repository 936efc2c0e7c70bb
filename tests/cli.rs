//! End-to-end tests of the `wawe` command line: the real binary against a real
//! environment file in a temporary directory.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::KillOnDrop;
use tempfile::TempDir;
use wawe::env::{Env, EnvOptions, Mode};

/// Generous: only there so a broken `--follow` fails the test instead of hanging it.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary directory with an environment path in it (not created yet).
struct Sandbox {
    dir: TempDir,
    db: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("swarm.db");
        Self { dir, db }
    }

    /// A `wawe` command run in the sandbox, with no `WAWE_ENV` inherited.
    fn command(&self) -> Command {
        support::wawe(self.dir.path())
    }

    /// Run `wawe env ARGS --env DB` to the end.
    fn env(&self, args: &[&str]) -> Output {
        self.command()
            .arg("env")
            .args(args)
            .arg("--env")
            .arg(&self.db)
            .output()
            .expect("run wawe")
    }

    /// Like [`Sandbox::env`], asserting success and returning stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.env(args);
        assert!(
            out.status.success(),
            "wawe env {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Like [`Sandbox::ok`] with `--json`, one parsed object per line.
    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        json_lines(&self.ok(&all))
    }

    /// Push a task and return its id.
    fn push(&self, queue: &str, payload: &str, extra: &[&str]) -> u64 {
        let mut args = vec!["push", queue, payload];
        args.extend_from_slice(extra);
        let line = self.json(&args);
        assert_eq!(line.len(), 1, "push prints one line: {line:?}");
        line[0]["id"].as_u64().expect("an id")
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Lines of the child's stdout, read on a thread so each can be awaited with a timeout.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_json(lines: &mpsc::Receiver<String>) -> Value {
    let line = lines
        .recv_timeout(LINE_TIMEOUT)
        .expect("`events --follow` printed the next event");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

#[test]
fn push_creates_the_environment_and_tasks_lists_it() {
    let sb = Sandbox::new();
    assert!(!sb.db.exists());

    let out = sb.ok(&["push", "builds", "compile-wawe"]);
    assert!(out.contains("pushed task 1"), "{out}");
    assert!(sb.db.exists(), "push creates the environment");
    sb.ok(&["push", "tests", "run-suite", "--priority", "-2"]);

    let table = sb.ok(&["tasks"]);
    for expected in [
        "builds",
        "compile-wawe",
        "tests",
        "run-suite",
        "ready",
        "-2",
    ] {
        assert!(
            table.contains(expected),
            "{expected:?} missing from:\n{table}"
        );
    }
}

#[test]
fn tasks_json_prints_one_object_per_line_with_the_task_fields() {
    let sb = Sandbox::new();
    sb.push(
        "builds",
        r#"{"crate":"wawe"}"#,
        &["--priority", "5", "--max-attempts", "7"],
    );
    sb.push("builds", "second", &[]);

    let tasks = sb.json(&["tasks"]);
    assert_eq!(tasks.len(), 2);
    let first = &tasks[0];
    assert_eq!(first["id"], 1);
    assert_eq!(first["queue"], "builds");
    assert_eq!(first["payload"], r#"{"crate":"wawe"}"#);
    assert_eq!(first["state"], "ready");
    assert_eq!(first["priority"], 5);
    assert_eq!(first["attempts"], 0);
    assert_eq!(first["max_attempts"], 7);
    assert!(first["created_at"].as_u64().is_some());
    assert_eq!(tasks[1]["payload"], "second");
}

#[test]
fn state_and_queue_filters_select_tasks() {
    let sb = Sandbox::new();
    let a = sb.push("builds", "a", &[]);
    sb.push("builds", "b", &["--depends-on", &a.to_string()]);
    sb.push("tests", "c", &[]);

    let ids = |args: &[&str]| -> Vec<u64> {
        sb.json(args)
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&["tasks", "--queue", "builds"]), [1, 2]);
    assert_eq!(ids(&["tasks", "--queue", "tests"]), [3]);
    assert_eq!(ids(&["tasks", "--state", "ready"]), [1, 3]);
    assert_eq!(ids(&["tasks", "--state", "blocked"]), [2]);
    assert_eq!(
        ids(&["tasks", "--state", "ready", "--queue", "builds"]),
        [1]
    );
    assert_eq!(ids(&["tasks", "--state", "done"]), Vec::<u64>::new());
    assert_eq!(ids(&["tasks", "--limit", "1"]), [1]);

    let table = sb.ok(&["tasks", "--queue", "tests"]);
    assert!(table.contains('c') && !table.contains("builds"), "{table}");
}

#[test]
fn an_unknown_state_is_refused_with_the_valid_ones() {
    let sb = Sandbox::new();
    sb.push("q", "p", &[]);
    let out = sb.env(&["tasks", "--state", "finished"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("finished") && err.contains("blocked"), "{err}");
}

#[test]
fn depends_on_gives_a_blocked_task_waiting_for_all_listed() {
    let sb = Sandbox::new();
    let a = sb.push("q", "a", &[]);
    let b = sb.push("q", "b", &[]);
    let c = sb.push("q", "c", &[]);

    let pushed = sb.json(&[
        "push",
        "q",
        "after-all",
        "--depends-on",
        &format!("{a},{b}"),
        "--depends-on",
        &c.to_string(),
    ]);
    assert_eq!(pushed[0]["state"], "blocked");
    let id = pushed[0]["id"].as_u64().unwrap();

    let task = sb.json(&["task", &id.to_string()]);
    assert_eq!(task[0]["state"], "blocked");
    assert_eq!(task[0]["depends_on"], serde_json::json!([a, b, c]));

    let shown = sb.ok(&["task", &id.to_string()]);
    assert!(
        shown.contains("blocked") && shown.contains("after-all"),
        "{shown}"
    );
}

#[test]
fn dedupe_key_returns_the_live_task_instead_of_a_new_one() {
    let sb = Sandbox::new();
    let first = sb.json(&["push", "q", "one", "--dedupe-key", "build-42"]);
    assert_eq!(first[0]["deduplicated"], false);
    let second = sb.json(&["push", "q", "two", "--dedupe-key", "build-42"]);
    assert_eq!(second[0]["deduplicated"], true);
    assert_eq!(second[0]["id"], first[0]["id"]);

    let human = sb.ok(&["push", "q", "three", "--dedupe-key", "build-42"]);
    assert!(human.contains("deduplicated"), "{human}");

    let tasks = sb.json(&["tasks"]);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["payload"], "one");
}

#[test]
fn delay_is_parsed_as_a_human_duration() {
    let sb = Sandbox::new();
    let id = sb.push("q", "later", &["--delay", "1h"]);
    let task = &sb.json(&["task", &id.to_string()])[0];
    let (created, not_before) = (
        task["created_at"].as_u64().unwrap(),
        task["not_before"].as_u64().unwrap(),
    );
    assert_eq!(not_before - created, 3_600_000);

    let bad = sb.env(&["push", "q", "p", "--delay", "soon"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--delay"), "{}", stderr(&bad));
}

#[test]
fn payload_dash_reads_stdin() {
    let sb = Sandbox::new();
    let mut child = sb
        .command()
        .args(["env", "push", "q", "-", "--json", "--env"])
        .arg(&sb.db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wawe");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"from\":\"stdin\"}\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.json(&["tasks"])[0]["payload"], r#"{"from":"stdin"}"#);
}

#[test]
fn events_follow_prints_pushes_of_other_processes_as_they_happen() {
    let sb = Sandbox::new();
    sb.push("q", "before", &[]);

    let child = sb
        .command()
        .args([
            "env", "events", "--follow", "--json", "--kind", "task.", "--env",
        ])
        .arg(&sb.db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wawe env events --follow");
    let mut child = KillOnDrop(child);
    let lines = stdout_lines(&mut child.0);

    let existing = next_json(&lines);
    assert_eq!(existing["kind"], "task.pushed");
    assert_eq!(existing["subject"], "task/1");
    assert_eq!(existing["agent"], "operator");
    assert_eq!(existing["detail"]["queue"], "q");

    // The follower has printed the journal so far; each further line can only
    // come from a commit made after it started waiting.
    for n in 2..=4u64 {
        let id = sb.push("q", &format!("live-{n}"), &[]);
        assert_eq!(id, n);
        let event = next_json(&lines);
        assert_eq!(event["kind"], "task.pushed");
        assert_eq!(event["subject"], format!("task/{n}"));
        assert!(event["seq"].as_u64().unwrap() > existing["seq"].as_u64().unwrap());
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "--follow keeps running"
    );
}

#[test]
fn events_lists_the_journal_with_filters() {
    let sb = Sandbox::new();
    sb.push("q", "a", &[]);
    sb.push("q", "b", &[]);
    sb.push("other", "c", &[]);

    let all = sb.json(&["events"]);
    assert_eq!(all.len(), 3);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );

    let after = sb.json(&["events", "--after", &seqs[0].to_string()]);
    assert_eq!(after.len(), 2);
    assert_eq!(sb.json(&["events", "--subject", "task/3"]).len(), 1);
    assert_eq!(
        sb.json(&["events", "--kind", "lease.", "--kind", "value."])
            .len(),
        0
    );
    assert_eq!(sb.json(&["events", "--limit", "2"]).len(), 2);

    let table = sb.ok(&["events"]);
    assert!(
        table.contains("task.pushed") && table.contains("task/2"),
        "{table}"
    );
}

#[test]
fn stats_counts_tasks_per_state_and_events() {
    let sb = Sandbox::new();
    let a = sb.push("q", "a", &[]);
    sb.push("q", "b", &[]);
    sb.push("q", "c", &["--depends-on", &a.to_string()]);

    let stats = &sb.json(&["stats"])[0];
    assert_eq!(stats["tasks"]["ready"], 2);
    assert_eq!(stats["tasks"]["blocked"], 1);
    assert_eq!(stats["tasks"]["done"], 0);
    assert_eq!(stats["events"], 3);
    assert_eq!(stats["last_seq"], 3);
    assert_eq!(stats["leases"], 0);

    let table = sb.ok(&["stats"]);
    assert!(
        table.contains("ready") && table.contains("blocked"),
        "{table}"
    );
    assert!(table.contains("events"), "{table}");
}

#[test]
fn listings_of_a_fresh_environment_are_empty_not_errors() {
    let sb = Sandbox::new();
    sb.push("q", "p", &[]);
    for cmd in [
        &["agents"][..],
        &["hosts"],
        &["reservations", "--prefix", "src/"],
        &["learnings", "--topic", "build"],
        &["learnings", "--search", "flaky test"],
        &["signals", "--prefix", "path/"],
        &["values", "--prefix", "config/"],
    ] {
        assert!(sb.json(cmd).is_empty(), "{cmd:?}");
        let human = sb.ok(cmd);
        assert!(human.starts_with("no "), "{cmd:?}: {human}");
    }
}

#[tokio::test]
async fn listings_show_what_agents_left_behind() {
    let sb = Sandbox::new();
    {
        let env = Env::open(&sb.db, EnvOptions::default()).unwrap();
        let host = env.register_host("box-1", 4242, 30_000).await.unwrap();
        let agent = env
            .agent_started(&host, "builder", 0, "sha256:abc")
            .await
            .unwrap();
        let src = ["src/lib.rs".to_owned()];
        env.reserve(&agent, &src, Mode::Exclusive, 600_000, 0)
            .await
            .unwrap();
        let tags = ["cargo".to_owned()];
        env.record_learning(&agent, "build", "cargo wants the lock file", &tags)
            .await
            .unwrap();
        env.put_value(&agent, "config/threads", "4", None, None)
            .await
            .unwrap();
        env.deposit(&agent, "path/src", 3.0, None).await.unwrap();
        env.close();
    }
    let agent_id = "builder.0@";

    let agents = sb.json(&["agents"]);
    assert_eq!(agents.len(), 1);
    assert!(agents[0]["id"].as_str().unwrap().starts_with(agent_id));
    assert_eq!(agents[0]["state"], "running");
    assert!(sb.ok(&["agents"]).contains("running"));

    let hosts = sb.json(&["hosts"]);
    assert_eq!(hosts[0]["hostname"], "box-1");
    assert!(sb.ok(&["hosts"]).contains("box-1"));

    let held = sb.json(&["reservations", "--prefix", "src/"]);
    assert_eq!(held[0]["resource"], "src/lib.rs");
    assert_eq!(held[0]["mode"], "exclusive");
    let table = sb.ok(&["reservations"]);
    assert!(
        table.contains("src/lib.rs") && table.contains("exclusive") && table.contains(agent_id),
        "{table}"
    );
    assert!(sb.json(&["reservations", "--prefix", "docs/"]).is_empty());

    let found = sb.json(&["learnings", "--search", "lock file"]);
    assert_eq!(found[0]["body"], "cargo wants the lock file");
    assert_eq!(sb.json(&["learnings", "--topic", "build"]).len(), 1);
    assert!(
        sb.json(&["learnings", "--search", "lock", "--topic", "deploy"])
            .is_empty()
    );
    assert!(sb.ok(&["learnings"]).contains("cargo wants the lock file"));

    let values = sb.json(&["values", "--prefix", "config/"]);
    assert_eq!(values[0]["key"], "config/threads");
    assert_eq!(values[0]["value"], "4");
    assert_eq!(values[0]["version"], 1);
    assert!(sb.ok(&["values"]).contains("config/threads"));

    let trails = sb.json(&["signals", "--prefix", "path/"]);
    assert_eq!(trails[0]["trail"], "path/src");
    assert!(trails[0]["strength"].as_f64().unwrap() > 0.0);
    assert!(sb.ok(&["signals"]).contains("path/src"));

    let stats = &sb.json(&["stats"])[0];
    assert_eq!(stats["agents"]["running"], 1);
    assert_eq!(stats["hosts"], 1);
    assert_eq!(stats["leases"], 1);
    assert_eq!(stats["learnings"], 1);
    assert_eq!(stats["values"], 1);
    assert_eq!(stats["signals"], 1);
}

#[test]
fn sweep_reports_what_it_cleaned_up() {
    let sb = Sandbox::new();
    sb.push("q", "p", &[]);
    let swept = &sb.json(&["sweep"])[0];
    assert_eq!(swept["leases_expired"], 0);
    assert_eq!(swept["claims_lapsed"], 0);
    let human = sb.ok(&["sweep"]);
    assert!(human.contains("lease"), "{human}");
}

#[test]
fn a_missing_task_is_an_error_naming_it() {
    let sb = Sandbox::new();
    sb.push("q", "p", &[]);
    let out = sb.env(&["task", "99"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("task 99 does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn read_commands_on_a_missing_path_fail_and_create_nothing() {
    let sb = Sandbox::new();
    for cmd in [
        &["tasks"][..],
        &["task", "1"],
        &["agents"],
        &["hosts"],
        &["reservations"],
        &["learnings"],
        &["signals"],
        &["values"],
        &["events"],
        &["events", "--follow"],
        &["stats"],
        &["sweep"],
    ] {
        let out = sb.env(cmd);
        assert!(!out.status.success(), "{cmd:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.starts_with("error: no environment at ") && err.contains("swarm.db"),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("wawe env push"), "{cmd:?}: {err}");
        assert!(!sb.db.exists(), "{cmd:?} created the file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(sb.dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn env_path_comes_from_wawe_env_or_defaults_to_wawe_db() {
    let sb = Sandbox::new();
    let out = sb
        .command()
        .args(["env", "push", "q", "from-variable"])
        .env("WAWE_ENV", &sb.db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sb.db.exists());

    let out = sb
        .command()
        .args(["env", "push", "q", "default"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sb.dir.path().join("wawe.db").exists());
}

fn assert_refused_untouched(path: &Path, sb: &Sandbox, cmd: &[&str], expected: &str) {
    let before = std::fs::read(path).unwrap();
    let out = sb.env(cmd);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains(expected),
        "{cmd:?}: {err}"
    );
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "{cmd:?} changed the file"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_unchanged() {
    let sb = Sandbox::new();
    std::fs::write(&sb.db, "these are my notes, not a database\n").unwrap();
    for cmd in [
        &["tasks"][..],
        &["stats"],
        &["events", "--follow"],
        &["push", "q", "p"],
    ] {
        assert_refused_untouched(&sb.db, &sb, cmd, "not a wawe environment");
    }
}

#[test]
fn help_explains_wawe_and_its_commands() {
    let sb = Sandbox::new();
    let top = sb.command().arg("--help").output().unwrap();
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        text.contains("swarms of sandboxed agents") && text.contains("env"),
        "{text}"
    );

    let push = sb
        .command()
        .args(["env", "push", "--help"])
        .output()
        .unwrap();
    assert!(push.status.success());
    let text = String::from_utf8_lossy(&push.stdout);
    for expected in [
        "Add a task to a queue",
        "--priority",
        "--delay",
        "--dedupe-key",
        "--depends-on",
        "WAWE_ENV",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

/// Writes value `key` = `text` into the sandbox's environment, as an agent would.
fn put_value(sb: &Sandbox, key: &str, text: &str) {
    let env = Env::open(&sb.db, EnvOptions::default()).unwrap();
    let who = wawe::env::AgentId::operator();
    support::block(env.put_value(&who, key, text, None, None)).unwrap();
    env.close();
}

#[test]
fn value_shows_one_value_whole_and_pretty_prints_json() {
    let sb = Sandbox::new();
    sb.push("q", "x", &[]);
    let long: String = (0..40).map(|i| format!("word{i} ")).collect();
    put_value(
        &sb,
        "wc/top",
        &format!(r#"{{"words":{},"text":"{long}"}}"#, 3),
    );
    let shown = sb.ok(&["value", "wc/top"]);
    assert!(shown.starts_with("wc/top (version 1)\n"), "{shown}");
    assert!(shown.contains("  \"words\": 3"), "pretty-printed: {shown}");
    assert!(shown.contains(long.trim_end()), "whole: {shown}");
    let line = &sb.json(&["value", "wc/top"])[0];
    assert_eq!(line["version"], 1);

    let missing = sb.env(&["value", "nope"]);
    assert!(!missing.status.success());
    let err = stderr(&missing);
    assert!(
        err.contains("there is no value `nope`") && err.contains("wawe env values"),
        "{err}"
    );
}

#[test]
fn tables_fit_100_columns_unless_wide() {
    let sb = Sandbox::new();
    let payload = format!(r#"{{"text":"{}"}}"#, "lorem ipsum ".repeat(30));
    sb.push(
        "a-queue-with-a-long-name",
        &payload,
        &["--dedupe-key", &"k".repeat(50)],
    );
    let fitted = sb.ok(&["tasks"]);
    assert!(
        fitted.lines().all(|l| l.chars().count() <= 100),
        "wider than 100 columns:\n{fitted}"
    );
    assert_eq!(fitted.lines().count(), 3, "one line per row:\n{fitted}");
    assert!(
        fitted.contains('…'),
        "long fields are cut with a marker:\n{fitted}"
    );
    let wide = sb.ok(&["tasks", "--wide"]);
    assert!(wide.contains(&payload), "--wide shows all:\n{wide}");
}

#[test]
fn limit_0_means_no_limit() {
    let sb = Sandbox::new();
    for i in 0..120 {
        sb.push("q", &i.to_string(), &[]);
    }
    assert_eq!(sb.json(&["events", "--limit", "0"]).len(), 120);
    assert_eq!(sb.json(&["events"]).len(), 100);
    assert_eq!(sb.json(&["tasks", "--limit", "0"]).len(), 120);
}

#[test]
fn a_missing_module_is_reported_with_its_cause_once() {
    let sb = Sandbox::new();
    let manifest = sb.dir.path().join("swarm.toml");
    std::fs::write(
        &manifest,
        "[agents.mapper]\nmodule = \"nope/mapper.wasm\"\n",
    )
    .unwrap();
    let out = sb
        .command()
        .arg("run")
        .arg(&manifest)
        .arg("--env")
        .arg(&sb.db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("nope/mapper.wasm"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
